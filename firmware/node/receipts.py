# The edge's receipts (SPEC 7.1), which empty the offline queues: the broker's PUBACK
# means only that the broker holds a record in memory, so a reading or event leaves its
# queue (node/queue.py) when a receipt covers its (boot, seq), and no sooner.
#
# A sent record that no receipt covers is sent again from the head of its queue: when a
# receipt covers a record first sent after it (the edge commits a node's records of one
# channel in order, so this one was lost on the way), or when no receipt has confirmed
# anything for a delay that doubles at each resend (2 intervals, 4, 8, ... at most an
# hour): a node never floods the broker while the edge is away. A receipt that covers a
# record sent on the current connection also gives a node without NTP time its clock.
#
# A phase of its own (node/__init__.py PHASES), in and out, kept out of the publishing
# phase's heap: a duty-cycled node applies the receipts of a wake once its link is gone
# (what they show lost goes at its next wake), an always-on node as they arrive and after
# every sample. The link only collects them (Node.inbox).
import json

from micropython import const

_RESEND_MAX_MS = const(3600000)   # the longest wait for a receipt before a resend
# SPEC 7.1.4: a receipt that came more than this after the publish it covers sets no clock.
_CLOCK_WITHIN_MS = const(60000)
TS_MIN_MS = 1577836800000         # SPEC 3.2: 2020-01-01 (beyond a board's small ints)
COUNTER_MAX = 4294967295          # boot and seq are unsigned 32-bit


def apply(node):
    """Apply the receipts the link collected, then the resend delay; write the queues'
    heads (once for all of it) and note the birth's first_seq (SPEC 6.4)."""
    hal = node.hal
    ev, tm = node.ev, node.tm
    while node.inbox:
        payload, at = node.inbox.pop(0)
        receipt = read(payload, node.id)
        if receipt is None:
            node.log("error receipt: refused %s" % payload[:80])
            continue
        ts, got = receipt
        probe = node.probe
        if (probe is not None and hal.epoch_ms() is None and covers(got, probe)
                and 0 <= at - probe[2] <= _CLOCK_WITHIN_MS):
            hal.set_epoch(ts + hal.local_ms() - at)
            node.log("clock from the edge, within %d ms" % (at - probe[2]))
        done = _confirm(node, ev, got, 0) + _confirm(node, tm, got, 1)
        if done:
            _progress(node)
            node.log("confirmed %d queued=%d" % (done, len(ev) + len(tm)))
    _overdue(node)
    ev.save()
    tm.save()
    node.mem["fs"] = first_seq(node)


def read(payload, node_id):
    """A receipt for this node as (ts, got), or None if it breaks a rule of SPEC 8.1's
    receipt checks. Written with json alone: protocols.codec.decode_receipt would bring
    codec and its imports (about 12 KB of heap) into the node, and one test for all the
    rules costs less heap than one per reason."""
    try:
        obj = json.loads(payload)
        ts, got, v = obj["ts"], obj["got"], obj["v"]
        ok = (len(payload) <= 1024 and sorted(obj) == ["got", "node", "ts", "v"]
              and type(v) is int and v == 1 and obj["node"] == node_id
              and type(ts) is int and ts >= TS_MIN_MS and type(got) is list
              and 0 < len(got) <= 8)
        end = [-1, 0]
        for span in got:
            boot, first, last = span
            ok = (ok and type(span) is list and type(boot) is type(first) is type(last) is int
                  and 0 <= boot <= COUNTER_MAX and 0 <= first <= last <= COUNTER_MAX
                  and [boot, first] > end)   # sorted, not overlapping
            end = [boot, last]
    except (ValueError, KeyError, TypeError):   # not JSON, a key missing, a wrong shape
        ok = False
    return (ts, got) if ok else None


def covers(got, record):
    """Does a range of got hold record ([boot, seq, ...])?"""
    for boot, first, last in got:
        if boot == record[0] and first <= record[1] <= last:
            return True
    return False


def _confirm(node, queue, got, which):
    """Drop the records got covers from the queue's head. Send the queue again from its
    head if got covers a sent record beyond one it does not, first sent after the last
    resend began. Returns how many records were dropped."""
    mark = (node.mem.get("mk") or [None, None])[which]
    top = [got[-1][0], got[-1][2]]   # the ranges are sorted: nothing beyond is covered
    head = i = 0
    gap = None                       # the first record got does not cover
    for line in _lines(queue):
        record = ident(line)
        if record > top or (i >= queue.sent and gap is not None):
            break
        if not covers(got, record):
            gap = gap or record
        elif gap is None:
            head += 1
        elif mark is None or record > mark:
            queue.pop(head, False)
            node.log("resend: %d %d lost, a later record arrived" % (gap[0], gap[1]))
            _rewind(node, queue, which)
            return head
        i += 1
    queue.pop(head, False)
    return head


def _rewind(node, queue, which):
    """Send the queue again from its head. The newest record sent so far becomes the
    mark: only a receipt covering a record beyond it shows this resend lost too."""
    if queue.sent:
        marks = node.mem.get("mk") or [None, None]
        marks[which] = ident(queue.peek(1, 0, queue.sent - 1)[0])
        node.mem["mk"] = marks
        queue.next = 0
        queue.dirty = True


def _progress(node):
    """A receipt confirmed something: the resend delay starts again from 2 intervals."""
    node.mem["rs"] = [node.hal.local_ms(), int(node.cfg["interval_s"] * 2000)]


def _overdue(node):
    """No receipt has confirmed anything for the resend delay while records wait for
    one: send both queues again once, and double the delay (at most an hour)."""
    now = node.hal.local_ms()
    if "rs" not in node.mem:
        _progress(node)
    since = node.mem["rs"]
    if not (node.ev.sent or node.tm.sent):
        since[0] = now   # nothing waits for a receipt: the delay starts with the next
    elif now - since[0] >= since[1]:
        node.log("resend: no receipt for %d ms" % (now - since[0]))
        _rewind(node, node.ev, 0)
        _rewind(node, node.tm, 1)
        since[0] = now
        since[1] = min(2 * since[1], _RESEND_MAX_MS)


def ident(line):
    """[boot, seq] of a queued reading or event (a dict for a moment: this phase has the
    heap the link's code left)."""
    record = json.loads(line)
    return [record["boot"], record["seq"]]


def first_seq(node):
    """The oldest seq of this boot still queued (not confirmed), else the next one."""
    first = node.seq
    for queue in (node.ev, node.tm):
        for line in _lines(queue):
            record = ident(line)
            if record[0] == node.boot:
                first = min(first, record[1])
                break
    return first


def _lines(queue):
    """The queue's records from its head, a few at a time (the queue reads its file for
    each few: this phase scans rarely beyond the first)."""
    i = 0
    while i < len(queue):
        for line in queue.peek(8, 4096, i):
            yield line
            i += 1
