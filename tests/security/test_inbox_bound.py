"""The inbox between paho's thread and the commit loop stays bounded: QoS 1 is bounded by
the broker's flow control (acks only after the commit), and QoS 0, which has none and
which the protocol never uses, is dropped and counted once the inbox is full."""

from __future__ import annotations

from edge.ingest import Inbox, Incoming


def message(i: int, qos: int) -> Incoming:
    return Incoming(i, qos, "city/v1/xuhui/caohejing/q-0001/telemetry", b"{}", 0, 0, None)


def test_qos0_beyond_the_bound_is_dropped_and_counted():
    inbox = Inbox(qos0_max_waiting=10)
    for i in range(30):
        inbox.put(message(i, 0))
    assert len(inbox) == 10 and inbox.qos0_dropped == 20
    # What was kept is the first ten, in order.
    assert [m.mid for m in inbox.take(100, 0.1)] == list(range(10))


def test_qos1_is_never_dropped():
    inbox = Inbox(qos0_max_waiting=10)
    for i in range(30):
        inbox.put(message(i, 1))
    inbox.put(message(99, 0))
    assert len(inbox) == 30 and inbox.qos0_dropped == 1


def test_a_batch_from_the_receiving_process_meets_the_same_bound():
    """put_many (the receiving process's batches) admits as put does, and adds the counts
    the receiving process kept on its way."""
    inbox = Inbox(qos0_max_waiting=10)
    batch = [message(i, 0 if i % 2 else 1) for i in range(30)]
    inbox.put_many(batch, redelivered=2, receipts_ignored=3, qos0_dropped=4)
    # Every QoS 1 message; QoS 0 ones only while fewer than ten waited (1, 3, ..., 9).
    kept = [m.mid for m in inbox.take(100, 0.1)]
    assert kept == [i for i in range(30) if i % 2 == 0 or i < 10]
    assert inbox.qos0_dropped == 4 + 10 and inbox.redelivered == 2 and inbox.receipts_ignored == 3
