"""The protocol contract under both interpreters: its own unit tests, the golden
vectors (each checked against its written expectation, and CPython's result equal to
MicroPython's), and compilation with mpy-cross."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hil import micropython
from protocols import catalog, topics
from protocols.errors import KIND_MISMATCH, REASONS
from tests.protocol import selftest, vector_runner

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VECTORS = REPO / "protocols" / "vectors"
CASES = json.loads((VECTORS / "cases.json").read_text())["cases"]
SELFTESTS = sorted(n for n in dir(selftest) if n.startswith("test_"))


def _lines(text: str) -> dict[str, dict]:
    out = {}
    for line in text.splitlines():
        obj = json.loads(line)
        out[obj.pop("name")] = obj
    return out


@pytest.fixture(scope="module")
def cpython_results() -> dict[str, dict]:
    buf = io.StringIO()
    vector_runner.run(str(VECTORS), buf)
    return _lines(buf.getvalue())


@pytest.fixture(scope="module")
def micropython_results() -> dict[str, dict]:
    proc = micropython.run([str(HERE / "vector_runner.py"), str(VECTORS)], heap="1m", micropypath=str(REPO))
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()[-2000:]
    return _lines(proc.stdout.decode())


def _check(name: str, got: dict) -> None:
    case = CASES[name]
    if "reason" in case:
        assert got.get("reason") == case["reason"], f"{name}: {case['note']}: got {got}"
    else:
        assert "reason" not in got, f"{name}: rejected as {got.get('reason')}: {case['note']}"
        assert got["result"] == case["expect"], name


@pytest.mark.parametrize("name", sorted(CASES))
def test_vector_on_cpython(name, cpython_results):
    _check(name, cpython_results[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_vector_on_micropython(name, micropython_results):
    _check(name, micropython_results[name])


def test_both_interpreters_agree_on_every_vector(cpython_results, micropython_results):
    assert set(cpython_results) == set(CASES) == set(micropython_results)
    differ = [n for n in CASES if cpython_results[n] != micropython_results[n]]
    assert not differ, differ


def test_vectors_cover_the_protocol():
    assert len(CASES) >= 40
    valid = [c for c in CASES.values() if "expect" in c]
    invalid = [c for c in CASES.values() if "reason" in c]
    # Vectors for the node's own decoders (commands, receipts) name the decoder.
    channels = {c["expect"].get("channel", c.get("decoder")) for c in valid}
    assert channels == set(topics.CHANNELS) - {topics.CMD, topics.RECEIPT} | {"command", "receipt"}
    kinds = {c["expect"]["kind"] for c in valid if c["expect"].get("channel") == "telemetry"}
    assert kinds == set(catalog.KINDS)
    assert any(len(c["expect"].get("readings", [])) > 1 for c in valid), "a batch"
    assert any(r["time_source"] == "edge" for c in valid for r in c["expect"].get("readings", [])), "age_ms"
    reasons = {c["reason"] for c in invalid}
    # kind_mismatch needs a receiver that knows each node's kind; the edge tests it.
    assert reasons == set(REASONS) - {KIND_MISMATCH}
    for name in CASES:
        assert (VECTORS / "payloads" / name).exists(), name


@pytest.mark.parametrize("name", SELFTESTS)
def test_selftest_on_cpython(name):
    getattr(selftest, name)()


def test_selftest_on_micropython():
    proc = micropython.run([str(HERE / "selftest.py")], heap="256k", micropypath=str(REPO))
    out = proc.stdout.decode()
    passed = sorted(line.split()[1] for line in out.splitlines() if line.startswith("PASS "))
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert passed == SELFTESTS


def test_compiled_protocol_decodes_within_a_small_heap(tmp_path):
    # On a node the protocol ships precompiled (.mpy), and the firmware decodes its
    # commands with it inside the node's heap budget: check that budget here.
    for source in (REPO / "protocols").glob("*.py"):
        proc = micropython.compile_file(source, tmp_path / "protocols" / (source.stem + ".mpy"))
        assert proc.returncode == 0, proc.stderr.decode()
    script = (
        "import gc\n"
        "from protocols.codec import decode_command, decode_receipt, encode_command, encode_receipt\n"
        "c = decode_command(encode_command('c-1', 'set', {'interval_s': 30}))\n"
        "r = decode_receipt(encode_receipt('p-1', 1795334340123, [[4, 0, 17], [4, 19, 25]]), 'p-1')\n"
        "gc.collect()\n"
        "print(c['args']['interval_s'], r[1][1][2], gc.mem_alloc())\n"
    )
    # cwd is the folder of .mpy files: MicroPython searches the current folder first, and
    # the repository's protocols/*.py must not be picked up instead.
    proc = micropython.run(["-c", script], heap="32k", micropypath=str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    interval, last_seq, in_use = proc.stdout.decode().split()
    assert (interval, last_seq) == ("30", "25")
    assert int(in_use) < 24 * 1024, f"protocol modules hold {in_use} bytes of heap"


@pytest.mark.parametrize("source", sorted((REPO / "protocols").glob("*.py")), ids=lambda p: p.name)
def test_protocol_module_compiles_with_mpy_cross(source, tmp_path):
    out = tmp_path / (source.stem + ".mpy")
    proc = micropython.compile_file(source, out)
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.stat().st_size > 0
