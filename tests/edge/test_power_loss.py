"""A power cut under the edge: everything it acknowledged is in the buffer it finds after.

The buffer lives on an ext4 file system in an image file, mounted through a loop device.
What a power cut keeps is what the kernel wrote down to the disk, not the page cache; the
image file is exactly that disk. At an arbitrary moment while readings stream in, the edge
is frozen (SIGSTOP: it writes nothing more), the image is copied (the disk as the cut
leaves it), and the edge is killed. The copy is mounted and its buffer opened, as the
edge would after power returns (SQLite recovers its WAL).

"Acknowledged" is what the edge told: each receipt it published (after COMMIT returned,
as it acks the broker) names the (boot, seq) committed per node. With `synchronous =
"full"` every one of them must be in the reopened buffer: in the identity index and as a
line waiting for the sink. (With "normal", the WAL is not synced at commit, and the last
commits before the cut are in the page cache only: this test is the one that would see
them missing.)"""

from __future__ import annotations

import random
import signal
import sqlite3
import time

import pytest

from tests.support.edge_process import write_config
from tests.support.publisher import Publisher, publish_paced
from tests.support.readings import counted_readings
from tests.support.receipts import ReceiptWatcher
from tests.support.small_disk import ext4_image, snapshot
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


PREFIX = "pwr"  # this test's nodes (the broker is shared: other tests' receipts are retained)


def receipted(watcher: ReceiptWatcher) -> set[tuple[str, int, int]]:
    """Every (node, boot, seq) some receipt said was committed to one of this test's nodes."""
    out = set()
    for node in [n for n in list(watcher.by_node) if n.startswith(PREFIX + "-")]:
        for _, ranges in watcher.receipts(node):
            for boot, first, last in ranges:
                out.update((node, boot, seq) for seq in range(first, last + 1))
    return out


def reopened(image, folder) -> tuple[set[tuple[str, int, int]], int, str]:
    """(identities, raw lines waiting, integrity) of the buffer in a copied disk image."""
    with ext4_image(image, folder, fresh=False) as disk:
        conn = sqlite3.connect(disk / "buffer.db")  # recovers the WAL, as the edge would
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            seen = set(conn.execute("SELECT node, boot, seq FROM seen").fetchall())
            lines = conn.execute("SELECT coalesce(sum(n), 0) FROM outbox WHERE stream = 1").fetchone()[0]
        finally:
            conn.close()
    return seen, lines, integrity


def test_every_acknowledged_reading_survives_a_power_cut(mosquitto, tmp_path, edges):
    image = tmp_path / "disk.img"
    rng = random.Random(1795)
    with ext4_image(image, tmp_path / "disk") as disk:
        config = write_config(
            tmp_path,
            mqtt_port=mosquitto.port,
            client_id="edge-power",
            buffer={"path": str(disk / "buffer.db"), "synchronous": "full"},
            # Nobody answers: every line stays in the buffer, where the check counts it.
            sinks=[{"name": "nowhere", "url": "http://127.0.0.1:9", "database": "x", "retry_max_s": 1.0}],
        )
        watcher = ReceiptWatcher(mosquitto.port, "power-receipts")
        pub = Publisher(mosquitto.port, "power-publisher")
        edge = edges(config)
        cuts = []
        try:
            msgs = counted_readings(9000, prefix=PREFIX)
            for cut in range(3):
                edge.start()
                part = msgs[cut * 3000 : (cut + 1) * 3000]
                sender = publish_paced(pub, part, per_second=1500)
                # This start's first receipt (on a loaded machine a restarted edge can take
                # longer than the whole pause below to commit the backlog the broker kept),
                # then an arbitrary moment, mid-stream.
                before = len(cuts[-1][1]) if cuts else 0
                wait_for(lambda n=before: len(receipted(watcher)) > n, 60, what="a receipt of this start")
                time.sleep(rng.uniform(0.2, 1.2))
                edge.proc.send_signal(signal.SIGSTOP)  # the power goes: no write from here on
                copy = tmp_path / f"cut-{cut}.img"
                snapshot(image, copy)
                edge.kill()
                sender.join(120)
                assert not sender.is_alive()
                cuts.append((copy, receipted(watcher)))
        finally:
            pub.close()
            watcher.close()
        assert not watcher.problems, watcher.problems[:5]
    for i, (copy, acknowledged) in enumerate(cuts):
        seen, lines, integrity = reopened(copy, tmp_path / f"after-{i}")
        assert integrity == "ok"
        assert acknowledged, "no receipt before the cut: the test saw nothing"
        lost = acknowledged - seen
        assert not lost, (
            f"cut {i}: {len(lost)} of {len(acknowledged)} acknowledged readings lost: {sorted(lost)[:5]}"
        )
        assert lines == len(seen)  # each identity's line is there, once
    # The cuts came at different moments of a growing stream: each kept more than the last.
    counts = [len(a) for _, a in cuts]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
