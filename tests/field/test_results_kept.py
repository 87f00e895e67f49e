"""A mistaken `node provision` never destroys the record of a good one: an error every row
has (a misspelt column, no --defaults) is said once and writes nothing, a new run merges
into the results by node, and a row that failed without touching its board keeps what an
earlier run recorded. Ctrl-C says how to go on; --no-wait does not claim nodes live."""

from __future__ import annotations

import json
import signal
import subprocess

from tests.support.cli import URBANSENSE
from tests.support.field_cli import inventory, provision, provision_args, site, statuses
from tests.support.waiting import wait_for


def test_mistaken_runs_keep_the_record_of_a_good_one(boards, standin_bundle, mosquitto, tmp_path):
    a, b = boards("a"), boards("b")
    defaults = site(tmp_path / "site.json", mosquitto.port)
    fleet = inventory(
        tmp_path / "fleet.csv",
        [f"p-0701,xuhui,caohejing,parking,{a.port},30", f"p-0702,xuhui,caohejing,parking,{b.port},30"],
        header="node,district,zone,kind,port,interval_s",
    )
    bundle, results = standin_bundle.root, tmp_path / "results"
    good = provision(fleet, bundle, results, defaults=defaults)
    assert good.returncode == 0, good.stderr
    record = (results / "results.csv").read_bytes(), (results / "results.json").read_bytes()

    # --defaults forgotten: one line, with the fix; nothing flashed, nothing written.
    forgot = provision(fleet, bundle, results)
    assert forgot.returncode == 1
    assert forgot.stderr.strip().splitlines() == [
        f"urbansense: {fleet}: every row fails: platform: Field required (no --defaults given: "
        "the site file gives platform, wifi and broker; deploy/field/site.example.json shows one)"
    ]
    assert ((results / "results.csv").read_bytes(), (results / "results.json").read_bytes()) == record

    # A misspelt column: refused as a whole file, before any board.
    misspelt = tmp_path / "misspelt.csv"
    misspelt.write_text(fleet.read_text().replace("interval_s", "intervall_s"))
    typo = provision(misspelt, bundle, results, defaults=defaults)
    assert typo.returncode == 1
    assert typo.stderr.strip().splitlines() == [
        f"urbansense: {misspelt}: unknown column 'intervall_s' (did you mean interval_s?); columns "
        "are node, district, zone, kind, port and config keys, dotted for nested ones "
        "(deploy/field/README.md)"
    ]
    assert ((results / "results.csv").read_bytes(), (results / "results.json").read_bytes()) == record

    # A run without --resume in which p-0702's port is wrong: p-0701 is flashed again, and
    # p-0702, whose board was never touched, keeps its earlier record (still live).
    fleet.write_text(fleet.read_text().replace(b.port, "/dev/no-such-port"))
    rerun = provision(fleet, bundle, results, "--json", defaults=defaults)
    assert rerun.returncode == 1
    this_run = {n["node"]: n["status"] for n in json.loads(rerun.stdout)["nodes"]}
    assert this_run == {"p-0701": "live", "p-0702": "failed"}
    assert f"{results} holds results of 2 node(s)" in rerun.stderr
    assert statuses(results) == {"p-0701": "live", "p-0702": "live"}


def test_no_wait_does_not_say_live(boards, standin_bundle, mosquitto, tmp_path):
    a = boards("a")
    fleet = inventory(tmp_path / "fleet.csv", [f"p-0711,xuhui,caohejing,parking,{a.port}"])
    results = tmp_path / "results"
    defaults = site(tmp_path / "site.json", mosquitto.port)
    proc = provision(fleet, standin_bundle.root, results, "--no-wait", defaults=defaults)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        "0 of 1 node(s) live, 1 flashed and verified but not watched for their birth message "
        f"(--no-wait); results in {results}/results.csv and results.json"
    )
    assert statuses(results) == {"p-0711": "flashed"}


def test_ctrl_c_during_provision_says_how_to_go_on(boards, standin_bundle, mosquitto, tmp_path):
    a, b = boards("a"), boards("b")
    fleet = inventory(
        tmp_path / "fleet.csv",
        [f"p-0721,xuhui,caohejing,parking,{a.port}", f"p-0722,xuhui,caohejing,parking,{b.port}"],
    )
    bundle, results = standin_bundle.root, tmp_path / "results"
    defaults = site(tmp_path / "site.json", mosquitto.port)
    proc = subprocess.Popen(
        [URBANSENSE, *provision_args(fleet, bundle, results, defaults=defaults)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first node is recorded; p-0722's board is being written: Ctrl-C.
        wait_for(lambda: (results / "results.json").exists(), timeout=120, what="the first result")
        wait_for(lambda: (b.flash / "main.py").exists(), timeout=120, what="the copy to p-0722's board")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"urbansense: interrupted while flashing p-0722: results so far in {results}; "
        "run again with --resume to do the rest"
    )
    assert "Traceback" not in err
    assert statuses(results) == {"p-0721": "live"}
    resumed = provision(fleet, bundle, results, "--resume", defaults=defaults)
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(results) == {"p-0721": "live", "p-0722": "live"}
