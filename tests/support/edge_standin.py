"""A stand-in edge that answers with receipts (protocols/SPEC.md 7.1), for tests and
benchmarks of the firmware alone: a paho-mqtt client that reads every reading and event
the nodes of a zone publish (through the reference decoder, so a node that breaks the
protocol shows up as an error), keeps what it has seen of each node as merged (boot,
first_seq, last_seq) ranges, and answers each message with a retained QoS 1 receipt, as an
edge does after its commit.

A test can hold identities back (`lose`: as if the broker lost them on the way), stop
answering (`away`), or publish receipts of its own (`publish`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from protocols import codec
from protocols.decoder import decode
from protocols.errors import ProtocolError
from tests.support.subscriber import subscribed_client
from tests.support.waiting import wait_for

MAX_RANGES = 8


def merge(ids: set[tuple[int, int]]) -> list[list[int]]:
    """Sorted, disjoint [boot, first_seq, last_seq] ranges holding exactly ids."""
    out: list[list[int]] = []
    for boot, seq in sorted(ids):
        if out and out[-1][0] == boot and out[-1][2] == seq - 1:
            out[-1][2] = seq
        else:
            out.append([boot, seq, seq])
    return out


def chosen(ranges: list[list[int]], new: list[tuple[int, int]]) -> list[list[int]]:
    """The ranges a receipt lists (SPEC 7.1.1): those holding the new identities, then the
    newest others, at most 8, sorted."""
    holding = [r for r in ranges if any(r[0] == b and r[1] <= s <= r[2] for b, s in new)]
    picked = holding[:MAX_RANGES]
    for r in reversed(ranges):
        if len(picked) >= MAX_RANGES:
            break
        if r not in picked:
            picked.append(r)
    return sorted(picked)


class ReceiptEdge:
    def __init__(
        self,
        host: str,
        port: int,
        district: str = "xuhui",
        zone: str = "caohejing",
        lose: Callable[[str, int, int], bool] | None = None,
    ) -> None:
        self.district, self.zone = district, zone
        self.lose = lose
        self.away = False
        self.seen: dict[str, set[tuple[int, int]]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        base = f"city/v1/{district}/{zone}/+/"
        self.client = subscribed_client(
            host,
            port,
            "edge-" + uuid.uuid4().hex[:8],
            [(base + "telemetry", 1), (base + "event", 1)],
            self._on_message,
            what="receipt edge",
        )

    def _on_message(self, client, userdata, msg) -> None:
        if self.away:
            return
        try:
            message = decode(msg.topic, bytes(msg.payload), now_ms=int(time.time() * 1000))
        except ProtocolError as err:
            with self._lock:
                self.errors.append(f"{msg.topic}: {err}")
            return
        node = message["node"]
        items = message["readings"] if message["channel"] == "telemetry" else [message]
        new = [(r["boot"], r["seq"]) for r in items]
        with self._lock:
            if self.lose is not None:
                new = [(b, s) for b, s in new if not self.lose(node, b, s)]
            if not new:
                return
            seen = self.seen.setdefault(node, set())
            seen.update(new)
            got = chosen(merge(seen), new)
        # From paho's own thread: no waiting for the PUBACK here, which that thread reads.
        self.publish(node, got, wait=False)

    def publish(self, node: str, got: list[list[int]], ts: int | None = None, wait: bool = True) -> None:
        """A receipt (retained, QoS 1): the edge's answer, or one of the test's own."""
        payload = codec.encode_receipt(node, int(time.time() * 1000) if ts is None else ts, got)
        info = self.client.publish(
            f"city/v1/{self.district}/{self.zone}/{node}/receipt", payload, qos=1, retain=True
        )
        if wait:
            info.wait_for_publish(10)

    def confirmed(self, node: str) -> set[tuple[int, int]]:
        with self._lock:
            return set(self.seen.get(node, ()))

    def wait_confirmed(self, node: str, ids, timeout: float = 60.0) -> None:
        """Until every identity of ids has been received (and confirmed)."""
        want = set(ids)
        wait_for(
            lambda: want <= self.confirmed(node), timeout, 0.05, f"{node} to deliver {len(want)} records"
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
