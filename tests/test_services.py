"""The server fixtures themselves: each real server starts, answers, survives a restart
with its state, and can be killed and started again (what the fault tests rely on)."""

from __future__ import annotations

import socket
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from hil.services import MosquittoServer, NatsServer, PortTaken, ServiceError, free_port


def _retained(broker, topic: str, timeout: float = 5.0) -> bytes | None:
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe-" + str(time.monotonic_ns()))
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else None


def _publish_retained(broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-" + str(time.monotonic_ns()))
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_mosquitto_keeps_retained_messages_across_restart(mosquitto_factory):
    broker = mosquitto_factory()
    _publish_retained(broker, "city/v1/d/z/n/status", b"hello")
    broker.restart()
    assert _retained(broker, "city/v1/d/z/n/status") == b"hello"


def test_mosquitto_can_be_killed_and_started(mosquitto_factory):
    broker = mosquitto_factory()
    port = broker.port
    broker.kill()
    assert not broker.running()
    broker.start()
    assert broker.running() and broker.port == port
    _publish_retained(broker, "t/x", b"1")
    assert _retained(broker, "t/x") == b"1"


def test_influxdb_write_query_and_survive_sigkill(influxdb_factory):
    db = influxdb_factory()
    db.create_database("t")
    body = b"parking,node=p-1 occupied=true 1795334340000\nparking,node=p-2 occupied=false 1795334340000"
    req = urllib.request.Request(f"{db.url}/write?db=t&precision=ms", data=body, method="POST")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    assert db.count("parking", "t") == 2
    db.kill()
    db.start()
    assert db.count("parking", "t") == 2


def test_influxdb_counts_the_points_written_to_each_database(influxdb_factory):
    db = influxdb_factory()
    for name in ("a", "b"):
        db.create_database(name)
    assert db.points_written("a") == 0

    def write(name: str, body: bytes) -> None:
        req = urllib.request.Request(f"{db.url}/write?db={name}&precision=ms", data=body, method="POST")
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 204

    write("a", b"air,node=a-1 pm25=1 1795334340000\nair,node=a-2 pm25=2 1795334340000")
    write("b", b"air,node=a-1 pm25=1 1795334340000")
    write("a", b"air,node=a-1 pm25=1 1795334340000")  # the same point again: written, not added
    assert (db.points_written("a"), db.points_written("b")) == (3, 1)
    assert db.count("air", "a") == 2


def test_victoria_accepts_v2_line_protocol(victoria):
    # A node id of its own: other tests write air readings to the same session server.
    body = b"air,node=svc-probe,zone=z pm25=35.5 %d" % time.time_ns()
    req = urllib.request.Request(f"{victoria.url}/api/v2/write?org=o&bucket=b", data=body, method="POST")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    series = victoria.export('{__name__="air_pm25",node="svc-probe"}', min_samples=1)
    assert [s["values"] for s in series] == [[35.5]]
    assert series[0]["metric"]["zone"] == "z"


def test_a_server_that_cannot_start_says_why(tmp_path):
    taken = MosquittoServer(tmp_path / "a")
    taken.start()
    try:
        clash = MosquittoServer(tmp_path / "b", port=taken.port)
        with pytest.raises(ServiceError) as err:
            clash.start(timeout=5)
        assert "mosquitto" in str(err.value)
    finally:
        taken.stop()


def _listener(port: int) -> socket.socket:
    """Another process's listener on `port`, as one of the suite's workers may open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_port_taken_after_it_was_picked_is_picked_again(tmp_path):
    """free_port() knows only that nothing listens now: a server whose own ports were
    taken before it bound them starts on others, whether the server says so itself
    (nats-server exits on its monitoring port) or the port is found taken before it starts."""
    nats = NatsServer(tmp_path / "nats")
    broker = MosquittoServer(tmp_path / "mosquitto")
    with _listener(nats.monitor_port) as monitor, _listener(broker.port) as mqtt_port:
        nats.start()
        broker.start()
        try:
            assert nats.monitor_port != monitor.getsockname()[1] and nats.healthy()
            assert "address already in use" in nats.log_path.read_text()  # its first start's end
            assert broker.port != mqtt_port.getsockname()[1]
            assert _retained(broker, "nothing/here", timeout=0.5) is None  # it answers MQTT
        finally:
            nats.stop()
            broker.stop()


def test_a_port_given_is_not_changed_and_a_restart_keeps_its_port(tmp_path):
    with _listener(free_port()) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(PortTaken, match=f"port {port} is already in use"):
            MosquittoServer(tmp_path / "given", port=port).start()
    broker = MosquittoServer(tmp_path / "picked").start()
    try:
        broker.kill()
        with _listener(broker.port):
            with pytest.raises(PortTaken):
                broker.start()
    finally:
        broker.kill()


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_an_influxdb_answer_cut_off_is_a_service_error(tmp_path):
    """A server stopped in the middle of its answer (a run's SIGTERM stops InfluxDB while
    a probe reads): one ServiceError, which pollers handle, not an HTTP library error."""
    import socket
    import threading

    from hil.services import InfluxDBServer

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_half() -> None:
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:  # the whole request read: the close is no reset
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = int(
            next(
                v
                for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            )
        )
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        conn.sendall(b'40\r\n{"results": [')  # a chunk of 64 bytes announced, 13 sent
        conn.shutdown(socket.SHUT_WR)
        conn.close()

    server = threading.Thread(target=answer_half, daemon=True)
    server.start()
    influx = InfluxDBServer(tmp_path, port=port)
    with pytest.raises(ServiceError, match="answer cut off"):
        influx.query("SHOW DATABASES")
    server.join(10)
    listener.close()
