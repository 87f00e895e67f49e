"""The firmware bundle as it goes onto a device: every firmware module and the three
protocol modules a node imports, compiled to .mpy with mpy-cross.

Compiling on the device (or in the unix port) from source costs more heap than the whole
application has, so virtual nodes run the compiled bundle exactly as a board does."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from hil.micropython import FIRMWARE_DIR, REPO_ROOT, compile_file

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


def build_bundle(out_dir: Path) -> Path:
    """Compile into out_dir (rebuilding only files whose source is newer). Returns out_dir."""
    out_dir = Path(out_dir)
    for src, rel in firmware_sources():
        if rel in SOURCE_ONLY:
            dest = out_dir / rel
            if not dest.exists() or dest.stat().st_mtime < src.stat().st_mtime:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            continue
        dest = out_dir / (rel[:-3] + ".mpy")
        if dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime:
            continue
        # Compile to a temporary name first: nodes of a fleet may be importing this file.
        tmp = dest.with_name(dest.name + ".tmp")
        result = compile_file(src, tmp)
        if result.returncode != 0:
            raise BuildError(f"{rel}: {result.stderr.decode(errors='replace').strip()}")
        os.replace(tmp, dest)
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


def micropypath(bundle: Path) -> str:
    """MICROPYPATH for a node running the bundle: frozen modules (asyncio lives there in
    the unix port), the flash root, and lib/ (on a board /lib is on sys.path too)."""
    return os.pathsep.join([".frozen", str(bundle), str(Path(bundle) / "lib")])
