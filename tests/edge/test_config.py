"""Config: the issue's TOML shape works as is, and every bad key is named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edge.config import ConfigError, load_config
from tests.support.cli import URBANSENSE

ISSUE_EXAMPLE = """
[site]
district = "xuhui"
zone = "caohejing"            # the X-level site this edge serves

[mqtt]
host = "127.0.0.1"
port = 1883
client_id = "edge-xuhui-caohejing"

[buffer]
path = "state/buffer.db"
max_bytes = 2000000000

[[sink]]
name = "district"
url = "http://127.0.0.1:8086"
api = "v1"
database = "district_xuhui"
data = "raw"

[[sink]]
name = "city"
url = "http://127.0.0.1:8086"
api = "v1"
database = "city"
data = "rollup"

[metrics]
listen = "127.0.0.1:9108"
"""


def check(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [URBANSENSE, "edge", "check-config", str(path), *extra], capture_output=True, text=True, timeout=60
    )


def test_issue_example_is_valid_and_paths_are_relative_to_the_file(tmp_path):
    path = tmp_path / "site" / "edge.toml"
    path.parent.mkdir()
    path.write_text(ISSUE_EXAMPLE)
    cfg = load_config(path)
    assert cfg.buffer_path == path.parent.resolve() / "state" / "buffer.db"
    assert cfg.subscriptions() == [
        f"city/v1/xuhui/caohejing/+/{c}" for c in ("telemetry", "event", "status", "cmd/ack")
    ]
    assert [s.data for s in cfg.sink] == ["raw", "rollup"]
    proc = check(path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["valid"] is True


def test_shared_group_and_absolute_buffer_path(tmp_path):
    text = ISSUE_EXAMPLE.replace(
        'client_id = "edge-xuhui-caohejing"', 'client_id = "w1"\nshared_group = "caohejing"'
    )
    text = text.replace('path = "state/buffer.db"', f'path = "{tmp_path}/abs.db"')
    path = tmp_path / "edge.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.buffer_path == tmp_path / "abs.db"
    assert all(s.startswith("$share/caohejing/city/v1/xuhui/caohejing/+/") for s in cfg.subscriptions())


@pytest.mark.parametrize(
    "change, named",
    [
        (('host = "127.0.0.1"', 'hots = "127.0.0.1"'), "mqtt.hots: unknown key"),
        (('api = "v1"\ndatabase = "city"', 'api = "v3"\ndatabase = "city"'), "sink[1].api"),
        (('data = "raw"', 'data = "everything"'), "sink[0].data"),
        (('zone = "caohejing" ', 'zone = "Cao He Jing" '), "site.zone"),
        (('database = "district_xuhui"\n', ""), "sink[0]: a v1 sink needs `database`"),
        (("port = 1883", "port = 99999"), "mqtt.port"),
        (('listen = "127.0.0.1:9108"', 'listen = "nowhere"'), "metrics.listen"),
        (('client_id = "edge-xuhui-caohejing"', ""), "mqtt.client_id: missing"),
        (('name = "city"', 'name = "district"'), "sink names must be unique: district"),
    ],
)
def test_bad_keys_are_named(tmp_path, change, named):
    assert change[0] in ISSUE_EXAMPLE
    path = tmp_path / "edge.toml"
    path.write_text(ISSUE_EXAMPLE.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(named in p for p in err.value.problems), err.value.problems
    proc = check(path)
    assert proc.returncode == 1
    assert named in proc.stdout


@pytest.mark.parametrize(
    "section, named",
    [
        ("[clock]\nmax_offset_s = 0\n", "clock.max_offset_s: Input should be greater than 0"),
        ('[clock]\nmax_offset_s = "2 min"\n', "clock.max_offset_s"),
        ("[clock]\nmax_ofset_s = 60\n", "clock.max_ofset_s: unknown key"),
        ('[receipts]\nenabled = "sometimes"\n', "receipts.enabled"),
        ("[receipts]\nqos = 0\n", "receipts.qos: unknown key"),
    ],
)
def test_receipts_and_clock_keys_are_checked(tmp_path, section, named):
    path = tmp_path / "edge.toml"
    path.write_text(ISSUE_EXAMPLE + "\n" + section)
    proc = check(path)
    assert proc.returncode == 1 and named in proc.stdout, proc.stdout
    path.write_text(ISSUE_EXAMPLE + "\n[receipts]\nenabled = false\n[clock]\nmax_offset_s = 30\n")
    cfg = load_config(path)
    assert (cfg.receipts.enabled, cfg.clock.max_offset_s) == (False, 30.0)
    path.write_text(ISSUE_EXAMPLE)
    cfg = load_config(path)
    assert (cfg.receipts.enabled, cfg.clock.max_offset_s) == (True, 120.0)  # the defaults


def test_two_bad_keys_are_both_named_and_toml_errors_are_reported(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(ISSUE_EXAMPLE.replace("host =", "hots =").replace("max_bytes =", "max_byte ="))
    proc = check(path, "--json")
    problems = json.loads(proc.stdout)["problems"]
    assert "mqtt.hots: unknown key, did you mean host?" in problems
    assert "buffer.max_byte: unknown key, did you mean max_bytes?" in problems
    path.write_text("[site\n")
    proc = check(path)
    assert proc.returncode == 1 and "not valid TOML" in proc.stdout


def test_run_refuses_a_bad_config_with_exit_code_2(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(ISSUE_EXAMPLE.replace("[metrics]", "[metric]"))
    proc = subprocess.run(
        [URBANSENSE, "edge", "run", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "metric: unknown key" in proc.stderr


def test_deploy_example_config_is_valid_once_its_token_is_filled_in(repo_root, tmp_path):
    example = (repo_root / "deploy" / "edge" / "edge.example.toml").read_text()
    path = tmp_path / "edge.toml"
    path.write_text(example)
    proc = check(path, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["problems"] == [
        "sink[1].token: is a placeholder (REPLACE-ME): put the real secret here, or remove the key"
    ]
    path.write_text(example.replace('token = "REPLACE-ME"', 'token = "a-real-token"'))
    proc = check(path)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(
    "change, line",
    [
        (("port = 1883", 'port = "1883"'), 'mqtt.port: must be an integer, not a string ("1883")'),
        (
            ("port = 1883", "port = 1883\nkeepalive_s = true"),
            "mqtt.keepalive_s: must be an integer, not true/false",
        ),
        (("max_bytes = 2000000000", "max_bytes = 2e9"), "buffer.max_bytes: must be an integer, not a number"),
        (('api = "v1"', "api = 1"), "sink[0].api: Input should be 'v1' or 'v2'"),
        (('data = "raw"', "data = true"), "sink[0].data"),
        (("[metrics]", "[metrics]\nlistn = 1"), "metrics.listn: unknown key, did you mean listen?"),
        (
            ('listen = "127.0.0.1:9108"', "listen = 9108"),
            "metrics.listen: must be a string (in quotes), not an integer",
        ),
        (
            ('database = "city"', 'database = "city"\npassword = "REPLACE-ME"'),
            "sink[1].password: is a placeholder",
        ),
        (('path = "state/buffer.db"', 'path = "/proc/self/buffer.db"'), "buffer.path: /proc/"),
        (('path = "state/buffer.db"', 'path = "/sys/buffer.db"'), "which is no disk"),
    ],
)
def test_strict_types_placeholders_and_paths_are_one_line_each(tmp_path, change, line):
    assert change[0] in ISSUE_EXAMPLE
    path = tmp_path / "edge.toml"
    path.write_text(ISSUE_EXAMPLE.replace(change[0], change[1], 1))
    proc = check(path, "--json")
    assert proc.returncode == 1, proc.stdout
    problems = json.loads(proc.stdout)["problems"]
    assert len(problems) == 1 and line in problems[0], problems
    run = subprocess.run(
        [URBANSENSE, "edge", "run", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and line in run.stderr and "Traceback" not in run.stderr


def test_check_config_takes_the_file_either_way(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(ISSUE_EXAMPLE)
    for args in ([str(path)], ["--config", str(path)]):
        proc = subprocess.run(
            [URBANSENSE, "edge", "check-config", *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and f"{path}: valid" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([URBANSENSE, "edge", "check-config"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--config FILE" in proc.stderr
    helps = subprocess.run(
        [URBANSENSE, "edge", "dead-letters", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "how many of the newest rows" in helps
