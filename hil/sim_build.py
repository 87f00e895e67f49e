"""The firmware bundle as it goes onto a device: every firmware module and the three
protocol modules a node imports, compiled to .mpy with mpy-cross.

Compiling on the device (or in the unix port) from source costs more heap than the whole
application has, so virtual nodes run the compiled bundle exactly as a board does."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hil.micropython import FIRMWARE_DIR, REPO_ROOT, compile_file, interpreter

# What a node imports from protocols/ (SPEC section 10: never decoder or catalog).
PROTOCOL_MODULES = ("__init__", "errors", "topics", "thresholds", "codec")
# main.py stays source: a board runs /main.py by name at boot.
SOURCE_ONLY = ("main.py",)


class BuildError(RuntimeError):
    """A firmware file did not compile: it is not valid MicroPython."""


def firmware_sources() -> list[tuple[Path, str]]:
    """(source file, path inside the flash root) for everything the bundle holds."""
    out: list[tuple[Path, str]] = []
    for src in sorted(FIRMWARE_DIR.rglob("*.py")):
        out.append((src, src.relative_to(FIRMWARE_DIR).as_posix()))
    for name in PROTOCOL_MODULES:
        out.append((REPO_ROOT / "protocols" / f"{name}.py", f"protocols/{name}.py"))
    return out


# Bumped when the way files are compiled changes: a bundle built another way is rebuilt.
BUILD_FORMAT = "2"   # 2: each module carries its path on the device as its source name


def build_bundle(out_dir: Path) -> Path:
    """Compile into out_dir (rebuilding only files whose source is newer). Returns out_dir."""
    out_dir = Path(out_dir)
    stamp = out_dir / ".build-format"
    rebuild_all = not stamp.exists() or stamp.read_text() != BUILD_FORMAT
    for src, rel in firmware_sources():
        if rel in SOURCE_ONLY:
            dest = out_dir / rel
            if not dest.exists() or dest.stat().st_mtime < src.stat().st_mtime:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            continue
        dest = out_dir / (rel[:-3] + ".mpy")
        if not rebuild_all and dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime:
            continue
        # Compile to a temporary name first: nodes of a fleet may be importing this file.
        tmp = dest.with_name(dest.name + ".tmp")
        result = compile_file(src, tmp, source_name=rel)
        if result.returncode != 0:
            raise BuildError(f"{rel}: {result.stderr.decode(errors='replace').strip()}")
        os.replace(tmp, dest)
    if rebuild_all:
        stamp.write_text(BUILD_FORMAT)
    return out_dir


def default_bundle_dir() -> Path:
    """A cache of the compiled bundle per user and per source tree, rebuilt when a source
    changes. Keyed by the tree's path: two checkouts (a worktree, an unpacked release)
    must not overwrite each other's modules, since staleness is judged by mtime alone."""
    tree = hashlib.sha1(str(FIRMWARE_DIR.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"urbansense-fw-{os.getuid()}-{tree}"


def bundle_size(out_dir: Path) -> int:
    """Bytes of everything that goes into flash (compiled modules and main.py)."""
    return sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file()
               and (p.suffix == ".mpy" or p.name in SOURCE_ONLY))


# What a device's flash root holds besides its own files (firmware/README.md).
FLASH_ROOT = ("main.py", "node", "hal", "drivers", "lib", "protocols")
# MICROPYPATH of a node run from its flash folder (node_argv): frozen modules, then /lib;
# the flash root itself comes first, as '' does on a board.
NODE_MICROPYPATH = os.pathsep.join([".frozen", "lib"])


def install(bundle: Path, flash_dir: Path) -> None:
    """Put the bundle into a virtual node's flash folder, laid out as on a device (links,
    so a fleet shares one build). Run from there, the node imports `node/app.mpy` as a
    board does, not a long absolute path: the interpreter keeps every module path it
    imported from as an interned string in the heap, so the sim would otherwise count
    ~1.5 KB that no board spends."""
    for name in FLASH_ROOT:
        link = Path(flash_dir) / name
        target = Path(bundle).resolve() / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)   # a copy of the firmware (a flash folder copied whole)
        link.symlink_to(target)


def node_argv(heap: str) -> list[str]:
    """The command that boots a node installed in the working directory (install()):
    `-c "import main"` rather than `main.py`, because the unix port puts a script's real
    folder first on sys.path, where a board has '' (the flash root)."""
    return [interpreter(), "-X", f"heapsize={heap}", "-c", "import main"]


def run_once(bundle: Path, flash_dir: Path, heap: str,
             timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Install the bundle in flash_dir and run the node until its process ends (a duty-
    cycled node: one wake, ending in deep sleep). Output captured as text."""
    install(bundle, flash_dir)
    env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
    return subprocess.run(node_argv(heap), cwd=flash_dir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sleep_as_asked(flash_dir: Path, cap_s: float = 1.0) -> None:
    """After a wake run with run_once: the deep sleep the node asked for (rtc.json), at
    most cap_s, as the sim's supervisor gives it. A node woken before its next sample is
    due takes no sample (it woke for commands), so harnesses that run wakes one after
    another give nodes a short interval and this sleep."""
    try:
        sleep_ms = json.loads((Path(flash_dir) / "rtc.json").read_text())["sleep_ms"]
    except (OSError, ValueError, KeyError):
        return
    time.sleep(min(sleep_ms / 1000, cap_s))


def micropypath(bundle: Path) -> str:
    """MICROPYPATH for a node running the bundle: frozen modules (asyncio lives there in
    the unix port), the flash root, and lib/ (on a board /lib is on sys.path too)."""
    return os.pathsep.join([".frozen", str(bundle), str(Path(bundle) / "lib")])
