"""Receipts as the nodes of the test site read them: a subscriber to every node's receipt
topic on a real broker, each receipt decoded with the node's own decoder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt

from protocols import codec
from protocols.topics import RECEIPT, parse_topic, zone_filter
from tests.support.site import DISTRICT, ZONE
from tests.support.subscriber import subscribed_client
from tests.support.waiting import wait_for

Receipt = tuple[int, list[list[int]]]  # (the edge's ts, the ranges)


def covers(got: list[list[int]], boot: int, seq: int) -> bool:
    return any(b == boot and first <= seq <= last for b, first, last in got)


class ReceiptWatcher:
    """Every receipt of the site's nodes, in arrival order per node (retained ones first,
    unless `retained` is False). `check(node, receipt)` runs as each live one arrives (e.g.
    that what it covers is committed): a retained receipt was published before the watcher
    subscribed, perhaps by an edge of an earlier test on the same broker."""

    def __init__(
        self,
        port: int,
        client_id: str = "receipt-watcher",
        check: Callable[[str, Receipt], None] | None = None,
        retained: bool = True,
    ) -> None:
        self.by_node: dict[str, list[Receipt]] = {}
        self.retained = retained
        self.problems: list[str] = []
        self.check = check
        self._lock = threading.Lock()
        self.client = subscribed_client(
            "127.0.0.1",
            port,
            client_id,
            [(zone_filter(DISTRICT, ZONE, RECEIPT), 1)],
            self._on_message,
            what="receipt watcher",
        )

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.retain and not self.retained:
            return
        node = parse_topic(msg.topic)[3]
        try:
            receipt = codec.decode_receipt(msg.payload, node)
        except ValueError as err:  # ProtocolError: the node would ignore it and log why
            self.problems.append(f"{msg.topic}: {err}")
            return
        if self.check is not None and not msg.retain:
            try:
                self.check(node, receipt)
            except AssertionError as err:
                self.problems.append(f"{msg.topic}: {err}")
        with self._lock:
            self.by_node.setdefault(node, []).append(receipt)

    def receipts(self, node: str) -> list[Receipt]:
        with self._lock:
            return list(self.by_node.get(node, []))

    def wait_covering(self, node: str, identities: Iterable[tuple[int, int]], after: int = 0) -> Receipt:
        """The first receipt of the node, after its first `after` ones, that covers every
        (boot, seq) given."""
        wanted = list(identities)

        def found():
            for receipt in self.receipts(node)[after:]:
                if all(covers(receipt[1], boot, seq) for boot, seq in wanted):
                    return receipt
            return None

        return wait_for(found, 60, 0.02, what=f"a receipt of {node} covering {wanted[:5]}...")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
