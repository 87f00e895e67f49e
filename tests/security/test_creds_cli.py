"""`urbansense creds` as a site administrator runs it: passwords reach the node's config
and the broker's files, and never the terminal."""

from __future__ import annotations

import json
import subprocess

from field.access import BrokerAccess
from tests.support.cli import urbansense


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return urbansense("creds", *args, timeout=60)


def test_add_writes_password_into_node_config_and_never_prints_it(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"node": "p-0001", "broker": {"host": "127.0.0.1", "port": 8883}}))
    proc = run(
        "add",
        "p-0001",
        "--district",
        "xuhui",
        "--zone",
        "caohejing",
        "--access-dir",
        str(tmp_path / "acc"),
        "--node-config",
        str(cfg),
    )
    assert proc.returncode == 0, proc.stderr
    password = json.loads(cfg.read_text())["broker"]["password"]
    assert len(password) >= 24
    assert password not in proc.stdout + proc.stderr
    assert json.loads(cfg.read_text())["broker"]["username"] == "p-0001"
    assert (cfg.stat().st_mode & 0o077) == 0
    passwd = (tmp_path / "acc" / "passwd").read_text()
    assert passwd.startswith("p-0001:") and password not in passwd  # stored hashed
    acl = (tmp_path / "acc" / "acl").read_text()
    assert "topic write city/v1/xuhui/caohejing/p-0001/telemetry" in acl
    assert "topic read city/v1/xuhui/caohejing/p-0001/cmd" in acl


def test_rotate_changes_the_password(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text("{}")
    acc = str(tmp_path / "acc")
    assert (
        run(
            "add", "p-0001", "--district", "d", "--zone", "z", "--access-dir", acc, "--node-config", str(cfg)
        ).returncode
        == 0
    )
    first = json.loads(cfg.read_text())["broker"]["password"]
    proc = run("rotate", "p-0001", "--access-dir", acc, "--node-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    second = json.loads(cfg.read_text())["broker"]["password"]
    assert first != second and second not in proc.stdout


def test_revoke_and_list(tmp_path):
    acc = tmp_path / "acc"
    secret = tmp_path / "secret"
    for node in ("p-0001", "p-0002"):
        assert (
            run(
                "add",
                node,
                "--district",
                "d",
                "--zone",
                "z",
                "--access-dir",
                str(acc),
                "--secret-file",
                str(secret),
            ).returncode
            == 0
        )
    assert run("revoke", "p-0001", "--access-dir", str(acc)).returncode == 0
    listed = json.loads(run("list", "--access-dir", str(acc), "--json").stdout)
    assert list(listed) == ["p-0002"]
    assert "p-0001" not in (acc / "passwd").read_text()
    assert set(BrokerAccess(acc).accounts()) == {"p-0002"}


def test_errors_are_one_line(tmp_path):
    proc = run("revoke", "ghost", "--access-dir", str(tmp_path))
    assert proc.returncode == 1 and "no account 'ghost'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run(
        "add",
        "Bad_Id",
        "--district",
        "d",
        "--zone",
        "z",
        "--access-dir",
        str(tmp_path),
        "--secret-file",
        str(tmp_path / "s"),
    )
    assert proc.returncode == 1 and "bad_id" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("add", "p-1", "--district", "d", "--zone", "z", "--access-dir", str(tmp_path))
    assert proc.returncode == 2 and "--node-config" in proc.stderr
    assert "p-1" not in BrokerAccess(tmp_path).accounts()  # nothing half-made
