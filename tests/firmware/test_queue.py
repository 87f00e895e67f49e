"""The offline queue in flash (firmware/node/queue.py) under MicroPython, through resets
(reopening), a torn write and overflow, and what it keeps of sending: how many records
have been sent and where sending goes on."""

from __future__ import annotations

import json
from pathlib import Path

from hil import micropython

SCRIPT = Path(__file__).parent / "mp" / "queue_check.py"
SEGMENT = 32


def test_queue_survives_reopen_torn_write_and_overflow(tmp_path, node_path):
    proc = micropython.run([str(SCRIPT)], micropypath=node_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    out = json.loads(proc.stdout)
    total = SEGMENT * 2 + 5
    assert out["count"] == total
    assert out["first3"] == [0, 1, 2]
    # Popped across a segment boundary, then reopened: the next record is the right one,
    # and the fully delivered first segment is gone from flash.
    assert out["after_pop_reopen"] == [total - SEGMENT - 2, [SEGMENT + 2, SEGMENT + 3]]
    assert out["segments_left"] == ["1", "2"]
    # The half-written record is cut off; nothing before it is lost; new ones follow.
    assert out["torn"] == [total - SEGMENT - 2 + 1, [total - 1, 1000]]
    # 25 pushed into a queue of 10: the 15 oldest dropped and counted, the newest 10 kept.
    assert out["bounded"] == [10, 15, 15, list(range(15, 25))]
    assert out["peek_bytes"] == 2  # each record is 10 bytes: two fit in 25
    assert out["peek_one"] == 1
    assert out["refill"] == [1, [500]]
    # The sent count and the sending cursor live in the head: 4 of 6 sent, reopened.
    assert out["sent_reopen"] == [6, 4, 4]
    # Three confirmed: the cursors move with the head; the next record is the 4th.
    assert out["sent_pop"] == [3, 1, 1, [3]]
    # A reset before that head was written: the three come back, sent (harmless: sent
    # again, and receivers deduplicate); nothing is lost.
    assert out["sent_unsaved"] == [6, 4, 4]
    # A rewind: everything is sent again from the head, after a reset too.
    assert out["sent_rewound"] == [3, 1, 0, [4, 5]]
