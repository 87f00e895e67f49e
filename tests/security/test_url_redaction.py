"""A sink URL's whole user part is masked wherever the edge prints it: a password may
hold "@" or ":" (finding: `check-config` printed what followed its first "@")."""

from __future__ import annotations

import json

import pytest

from edge.config import redact_url
from tests.support.cli import urbansense
from tests.support.edge_process import write_config

SECRET = "p@ss:w@rd"


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"http://writer:{SECRET}@127.0.0.1:8086/", "http://***@127.0.0.1:8086/"),
        ("http://writer@influx.example:8086", "http://***@influx.example:8086"),
        (f"https://:{SECRET}@influx.example/api?x=1", "https://***@influx.example/api?x=1"),
        ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
    ],
)
def test_the_whole_user_part_is_masked(url, shown):
    assert redact_url(url) == shown


def test_check_config_shows_no_part_of_a_password_with_at_signs(tmp_path):
    sink = {"name": "district", "url": f"http://writer:{SECRET}@127.0.0.1:9/", "api": "v1", "database": "raw"}
    config = write_config(tmp_path, mqtt_port=1883, sinks=[sink])
    for args in ((), ("--json",)):
        proc = urbansense("edge", "check-config", str(config), *args)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout + proc.stderr
        assert "***@127.0.0.1:9" in out
        for fragment in ("writer", "p@ss", "ss:w", "w@rd", "rd@"):
            assert fragment not in out, (fragment, out)
    assert json.loads(urbansense("edge", "check-config", str(config), "--json").stdout)["valid"] is True
