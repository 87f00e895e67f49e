"""The firmware bundle: what goes onto a node's flash, compiled and hashed. The one builder:
technicians' bundles, the rig's boards and the sim's virtual nodes all run what it builds.

`firmware/**.py` and the protocol modules a node imports (PROTOCOL_MODULES; never the
decoder or the catalog, SPEC §10) are compiled to .mpy with mpy-cross (which also proves they
are valid MicroPython), except `main.py`, which stays source because the board runs it by
name. Each module carries its path on the device as its source name (`node/app.py`): a node
interns that name in its heap, so a long build-machine path would cost heap on every board.
`manifest.json` lists every file with its sha256 and the bundle's version; the same manifest
is written to the node as `bundle.json`, so `node info` can tell what runs there and a
reflash can remove files an older bundle had."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from field.toolchain import FIRMWARE_DIR, PROTOCOLS_DIR, compile_file, cross_compiler

MANIFEST = "manifest.json"
ON_DEVICE_MANIFEST = "bundle.json"
FORMAT = 2  # 2: each module carries its path on the device as its source name
# What a node imports from protocols/ (SPEC section 10: never decoder or catalog).
PROTOCOL_MODULES = ("__init__", "errors", "topics", "thresholds", "codec")
# main.py stays source: a board runs /main.py by name at boot.
SOURCE_ONLY = ("main.py",)
# Where the firmware states its version (a line such as FW_VERSION = "1.0.0").
_VERSION_RE = re.compile(r"""^\s*(?:FW_VERSION|FW|VERSION)\s*=\s*["']([^"']{1,40})["']""", re.M)


class BundleError(Exception):
    """A bundle that cannot be built or does not match its manifest (one line)."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    version: str
    files: dict[str, str]  # path on the device -> sha256
    manifest: dict

    def path(self, name: str) -> Path:
        return self.root / name


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def firmware_version(firmware: Path = FIRMWARE_DIR) -> str:
    """The version the firmware states in its source, or "0.0.0" if it states none."""
    for candidate in sorted(firmware.rglob("*.py")):
        match = _VERSION_RE.search(candidate.read_text(errors="replace"))
        if match:
            return match.group(1)
    return "0.0.0"


def sources(firmware: Path = FIRMWARE_DIR, protocols: Path = PROTOCOLS_DIR) -> list[tuple[Path, str]]:
    """(source file, path of its source on the device) for everything the node needs."""
    found: list[tuple[Path, str]] = []
    for src in sorted(firmware.rglob("*.py")):
        rel = src.relative_to(firmware).as_posix()
        if "__pycache__" in rel or rel.startswith("tests/"):
            continue
        found.append((src, rel))
    for name in PROTOCOL_MODULES:
        found.append((protocols / f"{name}.py", f"protocols/{name}.py"))
    return found


def on_device(rel: str) -> str:
    """The file a source becomes on the device: node/app.py -> node/app.mpy."""
    return rel if rel in SOURCE_ONLY else rel[:-3] + ".mpy"


def _up_to_date(dest: Path, src: Path) -> bool:
    return dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime


def _write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary name: nodes of a running fleet may be importing the file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _compile(src: Path, rel: str, target: Path) -> None:
    def write(tmp: Path) -> None:
        proc = compile_file(src, tmp, source_name=rel)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise BundleError(f"mpy-cross rejected {rel} ({src}): {msg[-1] if msg else 'error'}")

    _write_atomic(target, write)


def build(
    out: Path,
    firmware: Path = FIRMWARE_DIR,
    protocols: Path = PROTOCOLS_DIR,
    progress: Callable[[str], None] | None = None,
    incremental: bool = False,
) -> Bundle:
    """Compile and hash the firmware into `out`. Files an earlier build of `out` wrote and
    this one does not are removed; nothing else in `out` is touched. With `incremental`,
    a file whose compiled form is newer than its source (built in the same format) is kept:
    the sim's cached bundle rebuilds only what changed."""
    found = sources(firmware, protocols)
    if not any(rel == "main.py" for _, rel in found):
        raise BundleError(f"no main.py in {firmware}: the firmware is not there yet")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = {on_device(rel) for _, rel in found}
    old_manifest = out / MANIFEST
    reuse = False
    old: dict = {}
    if old_manifest.exists():
        try:
            old = json.loads(old_manifest.read_text())
            reuse = incremental and old.get("format") == FORMAT
            for name in old.get("files", {}):
                if not reuse or name not in wanted:
                    (out / name).unlink(missing_ok=True)
        except (ValueError, AttributeError):
            pass
    files: dict[str, str] = {}
    for src, rel in found:
        dest = on_device(rel)
        target = out / dest
        if not (reuse and _up_to_date(target, src)):
            if progress:
                progress(dest)
            if dest.endswith(".mpy"):
                _compile(src, rel, target)
            else:
                _write_atomic(target, lambda tmp, src=src: shutil.copyfile(src, tmp))
        files[dest] = sha256_file(target)
    if reuse and old.get("files") == files:
        return Bundle(out, str(old["version"]), files, old)  # nothing changed
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    fw = firmware_version(firmware)
    manifest = {
        "format": FORMAT,
        "version": f"{fw}+{digest[:10]}",
        "fw": fw,
        "built": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mpy_cross": _mpy_cross_version(),
        "files": files,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    _write_atomic(out / MANIFEST, lambda tmp: tmp.write_text(text))
    return Bundle(out, manifest["version"], files, manifest)


@functools.lru_cache(maxsize=1)
def _mpy_cross_version() -> str:
    proc = subprocess.run([cross_compiler(), "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def load(root: Path) -> Bundle:
    """Read a bundle and check every file against its manifest (a changed file is refused)."""
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = dict(manifest["files"])
        version = str(manifest["version"])
    except FileNotFoundError:
        raise BundleError(
            f"{root} is not a bundle (no {MANIFEST}): build one with `urbansense node build`"
        ) from None
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"{manifest_path} is not a valid manifest: {err}") from None
    for name, expected in sorted(files.items()):
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {root} fails verification: {name} is missing")
        if sha256_file(path) != expected:
            raise BundleError(
                f"bundle {root} fails verification: {name} changed after the "
                "build (rebuild with `urbansense node build`)"
            )
    return Bundle(root, version, files, manifest)
