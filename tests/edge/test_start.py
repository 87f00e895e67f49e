"""What an operator sees when the edge cannot do its job from the start: a buffer folder it
cannot write, a second edge on the same config, a busy metrics port, a broker that does
not answer. Each is one line (no traceback), against the real `urbansense edge run`."""

from __future__ import annotations

import socket
import subprocess
import tomllib

from tests.support.cli import URBANSENSE
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import assert_exactly
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.readings import counted_readings
from tests.support.small_disk import tmpfs
from tests.support.waiting import wait_for


def run_edge(config) -> subprocess.CompletedProcess:
    return subprocess.run(
        [URBANSENSE, "edge", "run", "--config", str(config), "--log-format", "text"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_buffer_in_a_read_only_or_missing_folder_is_one_line_from_both_commands(
    mosquitto, influxdb, tmp_path
):
    with tmpfs(tmp_path / "ro", 1024 * 1024, readonly=True) as ro:
        for folder, said in (
            (ro, f"buffer.path: folder {ro} is not writable (a read-only file system)"),
            (
                ro / "state",
                f"buffer.path: folder {ro / 'state'} does not exist and cannot be made (a read-only",
            ),
        ):
            config = write_config(
                tmp_path / "cfg",
                mqtt_port=mosquitto.port,
                buffer={"path": str(folder / "buffer.db")},
                sinks=[v1_sink("district", influxdb, "ro")],
            )
            check = subprocess.run(
                [URBANSENSE, "edge", "check-config", str(config)], capture_output=True, text=True, timeout=60
            )
            assert check.returncode == 1 and said in check.stdout, check.stdout
            run = run_edge(config)
            assert run.returncode == 2, run.stderr
            lines = error_lines(run.stderr)
            assert len(lines) == 1 and said in lines[0], run.stderr


def test_a_second_edge_on_the_same_buffer_and_a_busy_metrics_port_are_one_line(
    mosquitto, influxdb, tmp_path, edges
):
    config = write_config(
        tmp_path / "one",
        mqtt_port=mosquitto.port,
        client_id="edge-twice",
        metrics=True,
        sinks=[v1_sink("district", influxdb, "twice")],
    )
    first = edges(config).start()
    second = run_edge(config)
    assert second.returncode == 1
    lines = error_lines(second.stderr)
    assert len(lines) == 1 and "another edge (pid" in lines[0] and "runs on the buffer" in lines[0], lines
    assert str(first.proc.pid) in lines[0]
    # The first edge was not disturbed: still one connection per session.
    assert first.running() and first.connections() == first.sessions
    # Another buffer, the same metrics port: refused in one line too.
    listen = tomllib.loads(first.config.read_text())["metrics"]["listen"]
    busy = write_config(
        tmp_path / "two",
        mqtt_port=mosquitto.port,
        client_id="edge-twice-2",
        sinks=[v1_sink("district", influxdb, "twice")],
    )
    busy.write_text(busy.read_text().replace('listen = ""', f'listen = "{listen}"'))
    run = run_edge(busy)
    assert run.returncode == 1
    errors = [line for line in error_lines(run.stderr) if " ERROR " in line]
    assert len(errors) == 1 and "metrics: cannot listen on" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    # A killed edge leaves no lock behind: a restart takes the buffer at once.
    first.kill()
    first.start()


def test_a_broker_that_does_not_answer_is_said_within_seconds_and_in_the_metrics(
    mosquitto_factory, influxdb, tmp_path, edges
):
    # A port that takes the connection and never answers CONNECT, then a real broker there.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    db = "broker_late"
    config = write_config(
        tmp_path,
        mqtt_port=port,
        client_id="edge-broker-late",
        metrics=True,
        mqtt_extra={"keepalive_s": 5},
        sinks=[v1_sink("district", influxdb, db)],
    )
    edge = edges(config).start(wait_connected=False)
    said = f"mqtt broker 127.0.0.1:{port} does not answer"
    wait_for(lambda: said in edge.log_text(), 30, what="the warning about the broker")
    line = next(x for x in edge.log_text().splitlines() if said in x)
    assert " WARNING " in line
    text = edge.metrics_text()
    assert metric(text, "urbansense_edge_mqtt_connected", 'session="edge-broker-late"') == 0
    assert metric(text, "urbansense_edge_mqtt_seconds_since_last_message", 'session="edge-broker-late"') > 0
    # Nothing listens: the error is the refusal, counted and shown.
    silent.close()
    wait_for(
        lambda: "ConnectionRefusedError" in edge.metrics_text(), 60, what="the connect error in the metrics"
    )
    broker = mosquitto_factory(port=port)
    wait_for(lambda: edge.connections() >= edge.sessions, 60, what="the edge to connect")
    assert "answers again" in edge.log_text()
    pub = Publisher(broker.port, "late-publisher")
    try:
        pub.publish_all(counted_readings(50, prefix="l"))
        assert_exactly(influxdb, db, 50)
    finally:
        pub.close()
    text = edge.metrics_text()
    assert metric(text, "urbansense_edge_mqtt_connected", 'session="edge-broker-late"') == 1
    assert edge.stop() == 0
    # A clean stop is no warning.
    assert "Normal disconnection" not in "\n".join(
        x for x in edge.log_text().splitlines() if " WARNING " in x
    )
