# The node's publishing phase: the MQTT client, the messages a node sends (SPEC section 3)
# and the replay of the offline queue. Loaded by Node.make_client() on the first connect,
# so that sampling, which comes first on a duty-cycled node, does not carry its code.
# A record stays queued after its PUBACK, until a receipt of the edge covers it: the link
# collects the receipts (Node.inbox) and node/receipts.py applies them.
import json

from micropython import const

from mqtt_client import MQTTClient
from node import FW_VERSION, drop

_BATCH_BYTES = const(1000)   # well under the 8 KiB limit: the batch is held in RAM
# SPEC 3.2: age_ms at most 30 days. Not a const(): it is beyond a board's small ints.
MAX_AGE_MS = 2592000000
_INBOX = const(8)            # receipts waiting to be applied (a later one lists the newest)


class Link:
    def __init__(self, node):
        self.node = node
        self.id = node.id
        self.kind = node.kind
        self.hal = hal = node.hal
        cfg = node.cfg
        # The protocol version and the topics, made with the boot's first link and kept
        # (node.topics): protocols.topics takes 4 KB of heap while it is in, and an
        # always-on node makes its link again after every park.
        made = node.topics
        if made is None:
            from protocols import topics
            d, z = cfg["district"], cfg["zone"]
            made = node.topics = (
                topics.VERSION, topics.topic(d, z, self.id, topics.TELEMETRY),
                topics.topic(d, z, self.id, topics.EVENT), topics.topic(d, z, self.id, topics.STATUS),
                topics.topic(d, z, self.id, topics.ACK), topics.topic(d, z, self.id, topics.CMD),
                topics.topic(d, z, self.id, topics.RECEIPT))
            topics = None
            drop("protocols")   # out before the client comes in
        (self.version, self.t_telemetry, self.t_event, self.t_status, self.t_ack, self.t_cmd,
         self.t_receipt) = made
        # What every message begins with; a queued record's own keys follow.
        self._envelope = ('{"v":%d,"node":"%s","kind":"%s",' % (
            self.version, self.id, self.kind)).encode()
        broker = cfg["broker"]
        # A clustered tier's members (broker.servers) stand in the client's host.
        self.client = MQTTClient(
            self.id, broker.get("members") or broker["host"], broker["port"],
            broker["username"], broker["password"],
            keepalive=cfg["keepalive_s"], clean=False,
            will=(self.t_status, self._status("offline"), True, 1),
            ssl=hal.ssl_context(broker["ca"]) if broker["tls"] else None,
            link_up=hal.link_up, on_message=self._on_message, log=node.log,
            rx_buffer=node.rx)
        # Subscribed at every connect (the client restores its subscriptions).
        self.client.subscriptions += [(self.t_cmd, 1), (self.t_receipt, 1)]

    # -- messages --------------------------------------------------------------------
    # Written here rather than with protocols.codec's encoders: a queued record already is
    # the body of its message, and codec brings protocols.errors, topics and thresholds
    # (about 12 KB of heap) into the publishing phase, where the node has least to spare.
    # A queued record is sent as bytes, never decoded into a dict (the dicts of a reading
    # were the publishing phase's heaviest allocations). Every message a node sends is
    # checked with protocols.decoder in tests/firmware.
    def _message(self, obj):
        """obj: the body of a status message (None values left out)."""
        obj["v"] = self.version
        obj["node"] = self.id
        obj["kind"] = self.kind
        for key in [k for k in obj if obj[k] is None]:
            del obj[key]
        return json.dumps(obj, separators=(",", ":")).encode()

    def _record(self, line, stamped=True):
        """A queued record (a JSON object on one line, no None values) as the parts of
        its message: the envelope, then the record's own keys. stamped: a reading or an
        event, which may carry "l" (an answer's text could hold those bytes)."""
        if stamped and b'"l":' in line:
            line = self._aged(line)
        return [self._envelope, line[1:]]

    def _aged(self, line):
        """The line with its "l" (the local clock: no synchronised time when it was taken)
        replaced by its ts if the clock has been synchronised since, in the same boot
        (SPEC 3.2), else by its age_ms."""
        start, end, local = _int_at(line, b'"l":')
        now = self.hal.local_ms()
        epoch = self.hal.epoch_ms()
        if epoch is not None and _int_at(line, b'"boot":')[2] == self.node.boot:
            stamp = '"ts":%d' % (local + epoch - now)
        else:
            stamp = '"age_ms":%d' % max(0, min(MAX_AGE_MS, now - local))
        return line[:start] + stamp.encode() + line[end:]

    def _status(self, state):
        node = self.node
        obj = {"boot": node.boot, "seq": max(0, node.seq - 1), "state": state}
        if state != "offline":
            interval = node.cfg["interval_s"]
            obj["fw"] = FW_VERSION
            obj["interval_s"] = interval if interval >= 5 else None
            obj["reset"] = node.reset
            obj["ts"] = self.hal.epoch_ms()
            # Loss accounting (SPEC 6.4): first_seq as the receipts last left it.
            obj["first_seq"] = node.mem.get("fs", 0)
            obj["dropped"] = node.counters["dropped"]
        return self._message(obj)

    def _on_message(self, topic, payload):
        if topic == self.t_receipt:
            inbox = self.node.inbox
            if len(inbox) >= _INBOX:
                inbox.pop(0)
            inbox.append((payload, self.hal.local_ms()))
        # Into flash before the client sends the PUBACK: from then on the broker forgets
        # the command, so a reset must not. A raw newline in JSON can only be whitespace
        # (one in a string must be escaped), and the queue holds one record per line.
        elif topic == self.t_cmd:
            if self.node.cmds.push(payload.replace(b"\n", b" ")):
                self.node.log("error cmd: queue full, the oldest command dropped")

    async def on_connect(self):
        if not self.hal.epoch_ms():
            self.hal.sync_time()
        node = self.node
        # The birth, once per boot and after every connection lost without a DISCONNECT
        # (the broker then published the will). After a clean one (node.parked) the
        # retained "online" is still true.
        if not node.parked:
            await self.client.publish(self.t_status, self._status("online"), retain=True)
        node.parked = False
        node.probe = None
        client = self.client
        self.node.log("connected %s:%d session=%d" % (client.host, client.port,
                                                       client.session_present))

    def _batch(self, lines):
        """A telemetry batch (SPEC 3.3) as the list of its parts, which the client sends
        one after another: the queued lines already are batch items (a line stamped with
        the local clock gets its "l" turned into ts or age_ms in place). Item dicts would
        be the node's heaviest moment, and one buffer of the whole batch needs a contiguous
        block that a fragmented heap may not have."""
        last = ident(lines[-1])
        parts = [self._envelope, ('"boot":%d,"seq":%d,"batch":[' % (last[0], last[1])).encode()]
        for line in lines:
            if b'"l":' in line:
                line = self._aged(line)
            parts.append(line)
            parts.append(b",")
        parts[-1] = b"]}"
        return parts

    async def drain(self):
        """Publish what waits: answers to commands first (they leave their queue at the
        PUBACK), then events, one per message (SPEC 5.1), then telemetry in batches, each
        from where its sending stands (the head again after a resend)."""
        node = self.node
        ev, tm, acks = node.ev, node.tm, node.acks
        while len(acks):
            await self.client.publish(self.t_ack, self._record(acks.peek(1)[0], False))
            acks.pop(1)
        sent_ev = sent_tm = 0
        while ev.next < len(ev):
            sent_ev += await self._send(ev, self.t_event, 1)
        while tm.next < len(tm):
            sent_tm += await self._send(tm, self.t_telemetry, node.batch_items)
        if sent_ev or sent_tm:
            node.published += sent_ev + sent_tm
            node.log("published tm=%d ev=%d queued=%d dropped=%d" % (
                sent_tm, sent_ev, len(tm) + len(ev), node.counters["dropped"]))

    async def _send(self, queue, topic, items):
        """Publish the queue's next message (up to items records). Returns how many."""
        start = queue.next
        lines = queue.peek(items, _BATCH_BYTES, start)
        n = len(lines)
        last = lines[-1]
        payload = self._record(lines[0]) if n == 1 else self._batch(lines)
        lines = None
        node = self.node
        node.note_heap()
        at = self.hal.local_ms()
        await self.client.publish(topic, payload)
        payload = None
        # Sent for the first time, in this boot, on this connection: a receipt covering
        # it was made after this moment, and its clock is fresh (SPEC 7.1.4).
        if start + n > queue.sent and node.probe is None:
            last = ident(last)
            if last[0] == node.boot:
                node.probe = last + [at]
        queue.next = start + n
        queue.sent = max(queue.sent, queue.next)
        queue.dirty = True
        return n


def ident(line):
    """[boot, seq] of a queued reading or event."""
    return [_int_at(line, b'"boot":')[2], _int_at(line, b'"seq":')[2]]


def _int_at(line, key):
    """(start, end, value) of the integer after key (e.g. b'"seq":') in a JSON line whose
    keys are all distinct and whose only key of that name is at the top level."""
    start = line.find(key)
    begin = start + len(key)
    ends = [i for i in (line.find(b",", begin), line.find(b"}", begin)) if i >= 0]
    end = min(ends)
    return start, end, int(line[begin:end])
