"""The `urbansense` command line as a user runs it: a real subprocess from the venv."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.support.cli import URBANSENSE, urbansense

VECTORS = Path(__file__).resolve().parent.parent / "protocols" / "vectors"


def test_help_works_and_lists_commands():
    proc = urbansense("--help")
    assert proc.returncode == 0, proc.stderr
    assert "decode" in proc.stdout


def test_every_command_has_help():
    from cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sub.choices, "no commands registered"
    for name in sub.choices:
        proc = urbansense(name, "--help")
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        assert "usage:" in proc.stdout


def test_each_command_loads_only_its_module():
    """cli.main.COMMANDS names, for each top-level command, the one module that registers
    it (a command line loads only that module): every command is in the table, with the
    module that really registers it."""
    import argparse
    import importlib

    from cli.main import COMMAND_MODULES, COMMANDS, build_parser, command_module

    registered = {}
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    assert COMMANDS == registered
    for command, module in COMMANDS.items():
        parser = build_parser(command_module([command, "--help"]))
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert command in sub.choices and set(sub.choices) == {c for c, m in COMMANDS.items() if m == module}
    assert command_module(["--help"]) is None and command_module([]) is None
    assert command_module(["no-such-command"]) is None


def test_unknown_command_fails():
    proc = urbansense("no-such-command")
    assert proc.returncode != 0


def test_decode_valid_payload_as_json():
    from protocols.codec import encode_event

    payload = encode_event(
        "m-0001", "manhole", 2, 40, "cover-open", True, value=37.5, ts=int(time.time() * 1000) - 1000
    )
    proc = urbansense("decode", "city/v1/xuhui/caohejing/m-0001/event", "--json", stdin=payload)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["valid"] is True and out["message"]["event"] == "cover-open"


def test_decode_invalid_payload_names_the_reason():
    payload = (VECTORS / "payloads" / "id-mismatch").read_bytes()
    proc = urbansense("decode", "city/v1/xuhui/caohejing/p-0001/telemetry", "--json", stdin=payload)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["reason"] == "id_mismatch"


def test_decode_missing_file_is_one_line():
    proc = urbansense("decode", "city/v1/a/b/c/telemetry", "/nonexistent/payload")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    # 5000 accounts make a listing far larger than a pipe's buffer, so the write fails
    # once `head` has closed its end.
    accounts = {f"n-{i:05d}": {"role": "node", "district": "d", "zone": "z"} for i in range(5000)}
    (tmp_path / "access.json").write_text(json.dumps(accounts))
    proc = subprocess.run(
        f"'{URBANSENSE}' creds list --json --access-dir '{tmp_path}' | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout == '{\n  "n-000'
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
