"""The firmware bundle: what goes onto a node's flash, compiled and hashed.

`firmware/**.py` and the protocol modules a node imports (hil.sim_build.PROTOCOL_MODULES;
never the decoder or the catalog, SPEC §10) are compiled to .mpy with mpy-cross (which also
proves they are valid MicroPython), except `main.py`, which stays source because the board
runs it by name. `manifest.json` lists every file with its sha256 and the bundle's version; the
same manifest is written to the node as `bundle.json`, so `node info` can tell what runs
there and a reflash can remove files an older bundle had."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from hil.micropython import FIRMWARE_DIR, REPO_ROOT, compile_file, cross_compiler
from hil.sim_build import PROTOCOL_MODULES

MANIFEST = "manifest.json"
ON_DEVICE_MANIFEST = "bundle.json"
FORMAT = 1
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


def _sources(firmware: Path, protocols: Path) -> list[tuple[Path, str]]:
    """(source file, path on the device) for everything the node needs."""
    found: list[tuple[Path, str]] = []
    for src in sorted(firmware.rglob("*.py")):
        rel = src.relative_to(firmware).as_posix()
        if "__pycache__" in rel or rel.startswith("tests/"):
            continue
        found.append((src, rel if rel == "main.py" else rel[:-3] + ".mpy"))
    for name in PROTOCOL_MODULES:
        found.append((protocols / f"{name}.py", f"protocols/{name}.mpy"))
    return found


def build(out: Path, firmware: Path = FIRMWARE_DIR, protocols: Path = REPO_ROOT / "protocols",
          progress: Callable[[str], None] | None = None) -> Bundle:
    """Compile and hash the firmware into `out` (emptied of older bundle files first)."""
    sources = _sources(firmware, protocols)
    if not any(dest == "main.py" for _, dest in sources):
        raise BundleError(f"no main.py in {firmware}: the firmware is not there yet")
    out.mkdir(parents=True, exist_ok=True)
    old = out / MANIFEST
    if old.exists():  # remove what the previous build wrote, nothing else
        for name in json.loads(old.read_text()).get("files", {}):
            (out / name).unlink(missing_ok=True)
    files: dict[str, str] = {}
    for src, dest in sources:
        if progress:
            progress(dest)
        target = out / dest
        if dest.endswith(".mpy"):
            proc = compile_file(src, target)
            if proc.returncode != 0:
                msg = proc.stderr.decode(errors="replace").strip().splitlines()
                shown = src.relative_to(REPO_ROOT) if src.is_relative_to(REPO_ROOT) else src
                raise BundleError(f"mpy-cross rejected {shown}: "
                                  f"{msg[-1] if msg else 'error'}")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
        files[dest] = sha256_file(target)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    fw = firmware_version(firmware)
    manifest = {
        "format": FORMAT,
        "version": f"{fw}+{digest[:10]}",
        "fw": fw,
        "built": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mpy_cross": _mpy_cross_version(),
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return Bundle(out, manifest["version"], files, manifest)


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
        raise BundleError(f"{root} is not a bundle (no {MANIFEST}): build one with "
                          "`urbansense node build`") from None
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"{manifest_path} is not a valid manifest: {err}") from None
    for name, expected in sorted(files.items()):
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {root} fails verification: {name} is missing")
        if sha256_file(path) != expected:
            raise BundleError(f"bundle {root} fails verification: {name} changed after the "
                              "build (rebuild with `urbansense node build`)")
    return Bundle(root, version, files, manifest)
