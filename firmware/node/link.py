# The node's publishing phase: the MQTT client, the messages a node sends (SPEC section 3)
# and the replay of the offline queue. Loaded by Node.make_client() on the first connect,
# so that sampling, which comes first on a duty-cycled node, does not carry its code.
import json

from micropython import const

from mqtt_client import MQTTClient
from node import FW_VERSION, drop

_BATCH_BYTES = const(1000)   # well under the 8 KiB limit: the batch is held in RAM
# SPEC 3.2: age_ms at most 30 days. Not a const(): it is beyond a board's small ints.
MAX_AGE_MS = 2592000000


class Link:
    def __init__(self, node):
        from protocols import topics
        self.node = node
        self.id = node.id
        self.kind = node.kind
        self.hal = hal = node.hal
        self.version = topics.VERSION
        # What every message begins with; a queued record's own keys follow.
        self._envelope = ('{"v":%d,"node":"%s","kind":"%s",' % (
            topics.VERSION, self.id, self.kind)).encode()
        cfg = node.cfg
        d, z = cfg["district"], cfg["zone"]
        self.t_telemetry = topics.topic(d, z, self.id, topics.TELEMETRY)
        self.t_event = topics.topic(d, z, self.id, topics.EVENT)
        self.t_status = topics.topic(d, z, self.id, topics.STATUS)
        self.t_ack = topics.topic(d, z, self.id, topics.ACK)
        self.t_cmd = topics.topic(d, z, self.id, topics.CMD)
        broker = cfg["broker"]
        self.client = MQTTClient(
            self.id, broker["host"], broker["port"], broker["username"], broker["password"],
            keepalive=cfg["keepalive_s"], clean=False,
            will=(self.t_status, self._status("offline"), True, 1),
            ssl=hal.ssl_context(broker["ca"]) if broker["tls"] else None,
            link_up=hal.link_up, on_message=self._on_message, log=node.log,
            rx_buffer=node.rx)
        # Subscribed at every connect (the client restores its subscriptions).
        self.client.subscriptions.append((self.t_cmd, 1))
        topics = None
        drop("protocols")   # the topics are made

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
        """The line with its "l" (local clock: no NTP yet) replaced by its age_ms."""
        start, end, local = _int_at(line, b'"l":')
        age = max(0, min(MAX_AGE_MS, self.hal.local_ms() - local))
        return line[:start] + ('"age_ms": %d' % age).encode() + line[end:]

    def _status(self, state):
        node = self.node
        obj = {"boot": node.boot, "seq": max(0, node.seq - 1), "state": state}
        if state != "offline":
            interval = node.cfg["interval_s"]
            obj["fw"] = FW_VERSION
            obj["interval_s"] = interval if interval >= 5 else None
            obj["reset"] = node.reset
            obj["ts"] = self.hal.epoch_ms()
        return self._message(obj)

    def _on_message(self, topic, payload):
        # Into flash before the client sends the PUBACK: from then on the broker forgets
        # the command, so a reset must not. A raw newline in JSON can only be whitespace
        # (one in a string must be escaped), and the queue holds one record per line.
        if topic == self.t_cmd:
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
        client = self.client
        self.node.log("connected %s:%d session=%d" % (client.host, client.port,
                                                       client.session_present))

    def _batch(self, lines):
        """A telemetry batch (SPEC 3.3) as the list of its parts, which the client sends
        one after another: the queued lines already are batch items (a line stamped with
        the local clock gets its "l" turned into "age_ms" in place). Item dicts would be
        the node's heaviest moment, and one buffer of the whole batch needs a contiguous
        block that a fragmented heap may not have."""
        last = lines[-1]
        parts = [self._envelope, ('"boot":%d,"seq":%d,"batch":[' % (
            _int_at(last, b'"boot":')[2], _int_at(last, b'"seq":')[2])).encode()]
        for line in lines:
            if b'"l":' in line:
                line = self._aged(line)
            parts.append(line)
            parts.append(b",")
        parts[-1] = b"]}"
        return parts

    async def drain(self):
        """Publish everything queued: answers to commands and events first, one per
        message (SPEC 5.1), then telemetry in batches. A record leaves the queue only
        after its PUBACK."""
        node = self.node
        ev, tm = node.ev, node.tm
        sent_ev = sent_tm = 0
        for queue, topic in ((node.acks, self.t_ack), (ev, self.t_event)):
            while len(queue):
                await self.client.publish(topic, self._record(queue.peek(1)[0], queue is ev))
                queue.pop(1)
                if queue is ev:
                    sent_ev += 1
        while len(tm):
            lines = tm.peek(node.batch_items, _BATCH_BYTES)
            n = len(lines)
            payload = self._record(lines[0]) if n == 1 else self._batch(lines)
            lines = None
            node.note_heap()
            await self.client.publish(self.t_telemetry, payload)
            payload = None
            tm.pop(n)
            sent_tm += n
        if sent_ev or sent_tm:
            node.published += sent_ev + sent_tm
            node.log("published tm=%d ev=%d queued=%d dropped=%d" % (
                sent_tm, sent_ev, len(tm) + len(ev), node.counters["dropped"]))


def _int_at(line, key):
    """(start, end, value) of the integer after key (e.g. b'"seq":') in a JSON line whose
    keys are all distinct and whose only key of that name is at the top level."""
    start = line.find(key)
    begin = start + len(key)
    ends = [i for i in (line.find(b",", begin), line.find(b"}", begin)) if i >= 0]
    end = min(ends)
    return start, end, int(line[begin:end])
