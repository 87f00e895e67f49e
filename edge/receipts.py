"""CommittedRanges: per node, the (boot, seq) the buffer holds, as merged ranges, and the
receipts that tell each node so (protocols/SPEC.md 7.1).

A node keeps every reading and event in its flash queue until a receipt covers it: the
broker's PUBACK only means the broker holds it in memory. So after a group commit the
edge owes, per node with a reading or event in the group (accepted or a duplicate: a
resend must be confirmed too), a retained QoS 1 receipt listing the ranges that hold the
group's records, then the node's newest other ranges, up to 8. A group whose records of
one node lie in more than 8 ranges (a node with holes replaying its queue) owes as many
receipts as it takes, the oldest ranges first: every record of the group is confirmed.

Owed receipts wait in OwedReceipts for a short window while messages keep coming: in a
backlog each node has a record in many groups in a row, and one receipt with its newest
ranges confirms them all, where one per group would cost the edge and the broker a
publish, a PUBACK and the node a receipt each time (SPEC 7.1.2).

The ranges live in memory for speed and in the table `committed`, written in the same
transaction as the records they describe, so after a crash they say exactly what the
buffer holds. They are kept for the node's `KEEP_BOOTS` newest boots and at most
`MAX_RANGES` per node (the oldest go first): forgetting a range loses nothing, because a
record sent again is a duplicate the identity index recognises, and it joins the ranges
again. The table `committed` belongs to this module; every statement on it is here.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right

from protocols.codec import COUNTER_MAX, MAX_RECEIPT_RANGES
from protocols.topics import RECEIPT, ROOT, VERSION

KEEP_BOOTS = 4  # per node, the newest boots whose ranges are kept
MAX_RANGES = 32  # per node, the most ranges kept (a node that lost records has holes)

TABLES = (
    """CREATE TABLE committed (
    node TEXT NOT NULL, boot INTEGER NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, PRIMARY KEY (node, boot, first_seq))""",
)

Range = list[int]  # [boot, first_seq, last_seq], bounds included
Owed = dict[str, tuple[str, str, list[list[Range]]]]  # node -> (district, zone, receipts)


def add(ranges: list[Range], boot: int, seq: int) -> int:
    """Put (boot, seq) into sorted, disjoint ranges (merging neighbours); returns the index
    of the range that holds it."""
    i = bisect_right(ranges, [boot, seq, COUNTER_MAX + 1])  # first range starting after it
    prev = ranges[i - 1] if i else None
    if prev is not None and prev[0] == boot and prev[1] <= seq <= prev[2]:
        return i - 1
    after = ranges[i] if i < len(ranges) else None
    joins_prev = prev is not None and prev[0] == boot and prev[2] == seq - 1
    joins_next = after is not None and after[0] == boot and after[1] == seq + 1
    if joins_prev and joins_next:
        prev[2] = after[2]
        del ranges[i]
        return i - 1
    if joins_prev:
        prev[2] = seq
        return i - 1
    if joins_next:
        after[1] = seq
        return i
    ranges.insert(i, [boot, seq, seq])
    return i


def holding(ranges: list[Range], boot: int, seq: int) -> int:
    """Index of the range that holds (boot, seq); the ranges must hold it."""
    return bisect_right(ranges, [boot, seq, COUNTER_MAX + 1]) - 1


def receipt_ranges(ranges: list[Range], touched: set[tuple[int, int]]) -> list[list[Range]]:
    """What the receipts of a group list: the ranges holding its records, 8 to a receipt
    in order, the last receipt filled up to 8 with the node's newest other ranges (it is
    the one left retained). Each list sorted; copies, not the ranges themselves."""
    if len(ranges) <= MAX_RECEIPT_RANGES:  # the usual case: one receipt lists them all
        return [[r[:] for r in ranges]]
    hit = sorted({holding(ranges, boot, seq) for boot, seq in touched})
    chunks = [hit[i : i + MAX_RECEIPT_RANGES] for i in range(0, len(hit), MAX_RECEIPT_RANGES)]
    last = set(chunks[-1])
    for i in range(len(ranges) - 1, -1, -1):
        if len(last) >= MAX_RECEIPT_RANGES:
            break
        last.add(i)
    chunks[-1] = sorted(last)
    return [[list(ranges[i]) for i in chunk] for chunk in chunks]


def trim(ranges: list[Range]) -> None:
    """Keep the newest KEEP_BOOTS boots and at most MAX_RANGES ranges."""
    if len(ranges) <= KEEP_BOOTS:  # the usual case (one range a boot): nothing to drop
        return
    boots = sorted({r[0] for r in ranges})
    if len(boots) > KEEP_BOOTS:
        oldest_kept = boots[-KEEP_BOOTS]
        ranges[:] = [r for r in ranges if r[0] >= oldest_kept]
    if len(ranges) > MAX_RANGES:
        del ranges[: len(ranges) - MAX_RANGES]


class CommittedRanges:
    """The committed (boot, seq) of every node, and the receipts a group commit owes."""

    def __init__(self) -> None:
        self.ranges: dict[str, list[Range]] = {}
        # node -> (district, zone, the (boot, seq) of the group being committed)
        self._touched: dict[str, tuple[str, str, set[tuple[int, int]]]] = {}
        # node -> its ranges as stored before the group (what flush rewrites)
        self._stored: dict[str, set[tuple[int, int, int]]] = {}

    def load(self, conn: sqlite3.Connection) -> None:
        """The ranges as stored (also after a rolled-back group: what it added is gone)."""
        self.ranges.clear()
        self._touched.clear()
        self._stored.clear()
        for node, boot, first, last in conn.execute(
            "SELECT node, boot, first_seq, last_seq FROM committed ORDER BY node, boot, first_seq"
        ):
            self.ranges.setdefault(node, []).append([boot, first, last])

    def add(self, district: str, zone: str, node: str, boot: int, seq: int) -> None:
        """A record of the group being committed (new or a duplicate)."""
        ranges = self.ranges.setdefault(node, [])
        entry = self._touched.get(node)
        if entry is None:
            entry = self._touched[node] = (district, zone, set())
            self._stored[node] = {tuple(r) for r in ranges}
        add(ranges, boot, seq)
        entry[2].add((boot, seq))

    def flush(self, conn: sqlite3.Connection) -> Owed:
        """Write the ranges the group changed (inside its transaction); returns the
        receipts it owes: node -> (district, zone, the ranges of each receipt)."""
        owed = {}
        gone: list[tuple[str, int, int]] = []
        changed: list[tuple[str, int, int, int]] = []
        for node, (district, zone, touched) in self._touched.items():
            ranges = self.ranges[node]
            # Listed before the trim: a record of a boot too old to keep is confirmed all
            # the same, so the node stops sending it.
            owed[node] = (district, zone, receipt_ranges(ranges, touched))
            trim(ranges)
            # Only the rows that changed: usually one range grew by a seq.
            before = self._stored[node]
            if len(ranges) == 1 and len(before) == 1:  # that usual case, without sets
                r = ranges[0]
                (b,) = before
                if b[0] == r[0] and b[1] == r[1]:
                    if b[2] != r[2]:
                        changed.append((node, r[0], r[1], r[2]))
                    continue
            now = {tuple(r) for r in ranges}
            starts = {r[:2] for r in now}
            gone += [(node, r[0], r[1]) for r in before - now if r[:2] not in starts]
            changed += [(node, *r) for r in now - before]
        if gone:
            conn.executemany("DELETE FROM committed WHERE node=? AND boot=? AND first_seq=?", gone)
        conn.executemany("INSERT OR REPLACE INTO committed VALUES (?, ?, ?, ?)", changed)
        self._touched.clear()
        self._stored.clear()
        return owed


def _covered(listed: list[Range], got: list[Range]) -> bool:
    """Whether every range of `got` is held whole by one of `listed`. (Loops, not
    generators: in a backlog this runs for every node of every group.)"""
    for boot, first, last in got:
        for o in listed:
            if o[0] == boot and o[1] <= first and last <= o[2]:
                break
        else:
            return False
    return True


class OwedReceipts:
    """Receipts owed after commits and not published yet, one entry per node.

    A later group's receipts for a node replace the earlier ones they cover: ranges only
    grow and merge, so the newest receipt lists everything an earlier one did, unless the
    node's ranges were trimmed or its group's records lay in more than 8 ranges; an
    earlier receipt with a range the newer ones do not hold is kept, before them, so
    every record of every group stays confirmed."""

    def __init__(self) -> None:
        self.pending: Owed = {}
        self.since = 0.0  # monotonic time the oldest pending receipt was owed

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, owed: Owed, mono: float) -> None:
        if not self.pending:
            self.since = mono
        pending = self.pending
        for node, entry in owed.items():
            before = pending.get(node)
            if before is not None:
                receipts = entry[2]
                listed = receipts[0] if len(receipts) == 1 else [r for got in receipts for r in got]
                kept = [got for got in before[2] if not _covered(listed, got)]
                if kept:
                    entry = (entry[0], entry[1], kept + receipts)
            pending[node] = entry

    def take(self) -> Owed:
        owed, self.pending = self.pending, {}
        return owed


def receipt_payload(node: str, ts: int, got: list[Range]) -> bytes:
    """protocols.codec.encode_receipt's bytes, a few times cheaper (no dict, no encoder
    object per call): the node id is a checked slug and the ranges are integers, so
    nothing needs escaping. tests/edge/test_committed.py compares the two."""
    ranges = ",".join([f"[{b},{f},{last}]" for b, f, last in got])
    return f'{{"v":{VERSION},"node":"{node}","ts":{ts},"got":[{ranges}]}}'.encode()


def receipt_messages(owed: Owed, ts: int) -> list[tuple[str, bytes]]:
    """(topic, payload) of each receipt owed, made at the edge's clock `ts`, in order.
    The ids come from records the decoder checked: the topic is formatted, not checked
    again (protocols.topics.receipt_topic would, at a cost per receipt)."""
    return [
        (f"{ROOT}/v{VERSION}/{district}/{zone}/{node}/{RECEIPT}", receipt_payload(node, ts, got))
        for node, (district, zone, receipts) in owed.items()
        for got in receipts
    ]
