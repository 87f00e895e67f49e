"""`tls: true` without the site CA is refused, in one line naming `broker.ca`, by the
firmware (under the real MicroPython) and by the laptop's tools, before any board is
touched: a node that took any certificate would hand its password to a rogue listener.
The field examples use TLS with the site CA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from field.node_config import ConfigError, load, parse
from hil import micropython
from hil.sim import DEFAULT_HEAP
from hil.sim_build import build_bundle, micropypath
from tests.support.cli import urbansense

CONFIG = {
    "node": "p-0001",
    "district": "xuhui",
    "zone": "caohejing",
    "kind": "parking",
    "platform": "sim",
    "broker": {"host": "127.0.0.1", "port": 8883, "tls": True},
}
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "field"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


def test_firmware_refuses_tls_without_a_ca(tmp_path, bundle):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    proc = micropython.run(
        [str(bundle / "main.py")], heap=DEFAULT_HEAP, micropypath=micropypath(bundle), cwd=tmp_path
    )
    lines = proc.stdout.decode().strip().splitlines()
    assert proc.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("config error: broker.ca:"), lines


def test_laptop_refuses_tls_without_a_ca(tmp_path):
    with pytest.raises(ConfigError, match=r"broker\.ca: required with tls"):
        parse(CONFIG, "p-0001.json")
    config = tmp_path / "p-0001.json"
    config.write_text(json.dumps(CONFIG))
    proc = urbansense(
        "node", "flash", "--port", str(tmp_path / "no-board"), "--node", str(config), "--no-wait"
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broker.ca: required with tls" in lines[0], lines


def test_field_examples_use_tls_with_the_site_ca():
    for name in ("node.example.json", "site.example.json"):
        broker = load(EXAMPLES / name)["broker"]
        assert broker["tls"] is True and broker["ca"] and broker["port"] == 8883, (name, broker)
