"""A TCP relay between a node and a real Mosquitto that loses the broker's first PUBACK,
as a flaky radio link would, and records the PUBLISH packets the node sends. With
`blackhole` set it forwards nothing in either direction and closes nothing: a link that
died silently (the far end gone, no FIN, no RST). It does not speak MQTT beyond splitting
the byte stream into packets."""

from __future__ import annotations

import socket
import threading


def _take(buf: bytearray) -> bytes | None:
    """Remove one whole packet (type byte, remaining length, body) from the front of buf;
    None if it has not all arrived yet."""
    size = shift = 0
    for i in range(1, min(len(buf), 5)):
        size |= (buf[i] & 0x7F) << shift
        shift += 7
        if not buf[i] & 0x80:
            end = i + 1 + size
            if len(buf) < end:
                return None
            pkt = bytes(buf[:end])
            del buf[:end]
            return pkt
    return None


def _packets(sock: socket.socket):
    buf = bytearray()
    while True:
        pkt = _take(buf)
        if pkt is not None:
            yield pkt
            continue
        data = sock.recv(65536)
        if not data:
            return
        buf += data


class PubackDropper:
    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.publishes: list[tuple[int, int]] = []  # (first byte, packet id) node -> broker
        self.dropped = 0
        self.blackhole = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, src: socket.socket, dst: socket.socket, from_node: bool) -> None:
        try:
            for pkt in _packets(src):
                kind = pkt[0] & 0xF0
                if from_node and kind == 0x30 and pkt[0] & 0x06:
                    # QoS>0 PUBLISH: remember its flags and packet id (after the topic).
                    i = 1
                    while pkt[i] & 0x80:
                        i += 1
                    i += 1
                    tlen = pkt[i] << 8 | pkt[i + 1]
                    pid_at = i + 2 + tlen
                    self.publishes.append((pkt[0], pkt[pid_at] << 8 | pkt[pid_at + 1]))
                if self.blackhole:
                    continue
                if not from_node and kind == 0x40 and self.dropped == 0:
                    self.dropped += 1
                    continue
                dst.sendall(pkt)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
