"""Virtual nodes run the firmware bundle exactly as a board does: built by field.bundle (the
one builder, cached per source tree and rebuilt only where a source changed) and laid out
in each node's flash folder as on a device.

Compiling on the device (or in the unix port) from source costs more heap than the whole
application has, so virtual nodes never run the sources."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from field import bundle as bundles
from field.toolchain import FIRMWARE_DIR
from hil.micropython import interpreter


class BuildError(RuntimeError):
    """A firmware file did not compile: it is not valid MicroPython."""


def build_bundle(out_dir: Path) -> Path:
    """Build (or bring up to date) the bundle in out_dir. Returns out_dir."""
    try:
        return bundles.build(Path(out_dir), incremental=True).root
    except bundles.BundleError as err:
        raise BuildError(str(err)) from None


def default_bundle_dir() -> Path:
    """A cache of the compiled bundle per user and per source tree, rebuilt when a source
    changes. Keyed by the tree's path: two checkouts (a worktree, an unpacked release)
    must not overwrite each other's modules, since staleness is judged by mtime alone."""
    tree = hashlib.sha1(str(FIRMWARE_DIR.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"urbansense-fw-{os.getuid()}-{tree}"


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
            shutil.rmtree(link)  # a copy of the firmware (a flash folder copied whole)
        link.symlink_to(target)


def node_argv(heap: str) -> list[str]:
    """The command that boots a node installed in the working directory (install()):
    `-c "import main"` rather than `main.py`, because the unix port puts a script's real
    folder first on sys.path, where a board has '' (the flash root)."""
    return [interpreter(), "-X", f"heapsize={heap}", "-c", "import main"]


def run_once(
    bundle: Path, flash_dir: Path, heap: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Install the bundle in flash_dir and run the node until its process ends (a duty-
    cycled node: one wake, ending in deep sleep). Output captured as text."""
    install(bundle, flash_dir)
    env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
    return subprocess.run(
        node_argv(heap), cwd=flash_dir, env=env, capture_output=True, text=True, timeout=timeout
    )


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
