# Runs under MicroPython in an empty folder: exercises node/queue.py the way resets and
# power cuts do (reopen after every step, a torn last line, a stale segment) and prints
# one JSON line per check for the host test.
import json
import os
from node.queue import FlashQueue, SEGMENT


def rec(i):
    return b'{"seq":%d}' % i


def seqs(lines):
    return [json.loads(line)["seq"] for line in lines]


out = {}
q = FlashQueue("q", 100)
for i in range(SEGMENT * 2 + 5):
    q.push(rec(i))
out["count"] = len(q)
out["first3"] = seqs(q.peek(3))
q.pop(SEGMENT + 2)
q = FlashQueue("q", 100)                       # reset: reopen from flash
out["after_pop_reopen"] = [len(q), seqs(q.peek(2))]
out["segments_left"] = sorted(n for n in os.listdir("q") if n.isdigit())
# A power cut in the middle of a write: half a line at the end of the last segment.
last = max(int(n) for n in os.listdir("q") if n.isdigit())
with open("q/%d" % last, "ab") as f:
    f.write(b'{"seq":99')
q = FlashQueue("q", 100)
q.push(rec(1000))
out["torn"] = [len(q), seqs(q.peek(100))[-2:]]
# Bounded: the oldest records go first, and are counted.
small = FlashQueue("small", 10)
dropped = 0
for i in range(25):
    dropped += small.push(rec(i))
out["bounded"] = [len(small), dropped, small.dropped, seqs(small.peek(100))]
# A byte budget limits a peek, but one record always comes out.
out["peek_bytes"] = len(small.peek(10, max_bytes=25))
out["peek_one"] = len(small.peek(10, max_bytes=1))
# Drain to empty, reopen, push again: order goes on.
small.pop(len(small))
small = FlashQueue("small", 10)
small.push(rec(500))
out["refill"] = [len(small), seqs(small.peek(5))]
# What has been sent and where sending goes on: kept in the head with the records, moved
# back by pops, and a rewind (send everything again) survives a reset too.
sent = FlashQueue("sent", 100)
for i in range(6):
    sent.push(rec(i))
sent.next = 4
sent.sent = 4
sent.dirty = True
sent.save()
sent = FlashQueue("sent", 100)
out["sent_reopen"] = [len(sent), sent.sent, sent.next]
sent.pop(3, False)                              # confirmed; the head written later
out["sent_pop"] = [len(sent), sent.sent, sent.next, seqs(sent.peek(1))]
sent = FlashQueue("sent", 100)                 # reset before the head was written
out["sent_unsaved"] = [len(sent), sent.sent, sent.next]
sent.pop(3, False)
sent.next = 0
sent.dirty = True
sent.save()
sent = FlashQueue("sent", 100)
out["sent_rewound"] = [len(sent), sent.sent, sent.next, seqs(sent.peek(5, 4096, 1))]
print(json.dumps(out))
