"""`urbansense demo` as a user meets it before the city starts: its state folder, its
arguments, and `--query` on a folder with no data. One clear line, non-zero exit."""

from __future__ import annotations

import pytest

from demo.city import MARKER, DemoError, prepare_state_dir
from hil.stack.edges import EdgeSite, edge_config
from tests.support.cli import urbansense


def test_state_dir_is_made_and_marked(tmp_path):
    path = prepare_state_dir(tmp_path / "var" / "demo")
    assert (path / MARKER).exists() and path.is_absolute()


def test_second_run_cleans_its_own_state(tmp_path):
    path = prepare_state_dir(tmp_path / "demo")
    (path / "influxdb").mkdir()
    (path / "influxdb" / "old.db").write_text("old")
    again = prepare_state_dir(tmp_path / "demo")
    assert again == path and (path / MARKER).exists() and not (path / "influxdb").exists()


def test_a_folder_the_demo_did_not_make_is_left_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DemoError, match="not made by the demo"):
        prepare_state_dir(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--duration", "0"], "--duration 0: must be more than 0 seconds"),
        (["--nodes-per-zone", "0"], "--nodes-per-zone 0: must be 1..200"),
        (["--interval", "0.01"], "--interval 0.01: must be 0.1..3600 seconds"),
    ],
)
def test_bad_arguments_are_one_line(args, message, tmp_path):
    proc = urbansense("demo", "--state-dir", str(tmp_path / "d"), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"urbansense: {message}"
    assert not (tmp_path / "d").exists()


def test_foreign_state_dir_is_refused_without_a_traceback(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    proc = urbansense("demo", "--state-dir", str(tmp_path), "--duration", "1")
    assert proc.returncode == 1
    assert "not made by the demo" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "notes.txt").exists()


def test_query_without_a_previous_run(tmp_path):
    proc = urbansense("demo", "--state-dir", str(tmp_path / "none"), "--query", "SHOW DATABASES")
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == f"urbansense: no demo data in {tmp_path / 'none'}: run `urbansense demo` first"
    )


def test_edge_config_follows_the_schema_databases(tmp_path):
    import tomllib

    text = edge_config(
        EdgeSite("minhang", "zizhu"), ("127.0.0.1", 1883), "http://127.0.0.1:8086", tmp_path, 9108
    )
    cfg = tomllib.loads(text)
    assert cfg["site"] == {"district": "minhang", "zone": "zizhu"}
    assert cfg["mqtt"]["client_id"] == "edge-minhang-zizhu"
    sinks = {s["name"]: s for s in cfg["sink"]}
    assert (sinks["district"]["database"], sinks["district"]["data"]) == ("district_minhang", "raw")
    assert (sinks["city"]["database"], sinks["city"]["data"]) == ("city", "rollup")
    assert cfg["metrics"]["listen"] == "127.0.0.1:9108"


def test_edge_config_is_accepted_by_the_edge(tmp_path):
    from edge.config import load_config

    path = tmp_path / "edge.toml"
    path.write_text(
        edge_config(
            EdgeSite("xuhui", "caohejing"), ("127.0.0.1", 1883), "http://127.0.0.1:8086", tmp_path, 9108
        )
    )
    cfg = load_config(path)
    assert cfg.buffer_path == tmp_path / "buffer.db"
    assert [s.database for s in cfg.sink] == ["district_xuhui", "city"]


def test_a_second_demo_on_the_same_folder_is_refused(tmp_path):
    from demo.city import exclusive

    state = tmp_path / "demo"
    with exclusive(state):
        proc = urbansense("demo", "--state-dir", str(state), "--duration", "1")
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            f"urbansense: another demo is running on {state}; wait for it or choose another --state-dir"
        )
    with exclusive(state):  # free again once the first run ended
        pass
