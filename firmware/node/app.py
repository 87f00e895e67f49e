# The node: sample -> detect -> offline queue (flash) -> MQTT, on one of two schedules.
#
# Every reading and event is written to the offline queue before anything is sent, and
# leaves it only after the broker's PUBACK: a reset, a power cut or an outage at any
# moment costs nothing (at least once; the receivers deduplicate on (node, boot, seq)).
# The schedules drive a Node: node/always_on.py (mains power) and node/duty_cycle.py
# (batteries); only the one in use is loaded.
#
# Heap is the budget (loaded bytecode lives in the heap): the node has two phases, and
# their code need not be resident together. Sensing (samplers, drivers, detection, the
# sim's physics) is loaded on the first sample and can be released (release_sensing);
# the MQTT client and the protocol encoders are loaded on the first connect (make_client).
# A duty-cycled node samples, releases sensing, then connects.
import gc
import json
import sys
import time

import asyncio
from node import files
from node.queue import FlashQueue

FW_VERSION = "1.0.0"
BOOT_FILE = "state/boot"
COUNTERS_FILE = "state/counters.json"
BATCH_ITEMS = 12
BATCH_BYTES = 1500            # well under the 8 KiB limit: the batch is built in RAM
MAX_AGE_MS = 2592000000       # SPEC 3.2: age_ms at most 30 days
WATCHDOG_MS = 8000            # rp2's watchdog tops out near 8.3 s


class Node:
    def __init__(self, hal, cfg):
        self.hal = hal
        self.cfg = cfg
        self.id = cfg["node"]
        self.kind = cfg["kind"]
        self.t0 = time.ticks_ms()
        files.makedirs("state")
        mem = hal.rtc_load()
        cause = hal.reset_cause()
        boot = files.read_json(BOOT_FILE, 0)
        if cause == "deepsleep" and mem.get("boot") == boot:
            # A wake from deep sleep continues the same boot: seq goes on (SPEC 3.1).
            self.seq = mem.get("seq", 0)
        else:
            boot += 1
            files.write_json(BOOT_FILE, boot)
            self.seq = 0
            mem["det"] = {}
            mem["cmds"] = []
            mem["boot_ms"] = hal.local_ms()
        self.boot = boot
        self.mem = mem
        self.reset = cause
        self.done_cmds = mem["cmds"]
        self.counters = files.read_json(COUNTERS_FILE, {"dropped": 0})
        self.ev = FlashQueue("queue/ev", cfg["queue_max"])
        self.tm = FlashQueue("queue/tm", cfg["queue_max"])
        self.detect = None        # loaded with the sampler on the first sample
        self.sampler = None
        self.client = None        # made by make_client() before the first connect
        self.inbox = []
        self.reboot = False
        self.published = 0
        self.heap_peak = 0
        # Halved after a MemoryError (a fragmented heap), kept through deep sleep.
        self.batch_items = mem.get("batch", BATCH_ITEMS)
        self.log("boot %d reset=%s kind=%s schedule=%s queued=%d" % (
            boot, cause, self.kind, cfg["schedule"], len(self.ev) + len(self.tm)))

    def make_client(self):
        """The MQTT client, its topics and the protocol encoders, loaded on first use."""
        if self.client is not None:
            return self.client
        from mqtt_client import MQTTClient
        from protocols import topics
        cfg, hal = self.cfg, self.hal
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
            link_up=hal.link_up, on_message=self._on_message, log=self.log)
        # Subscribed at every connect (the client restores its subscriptions).
        self.client.subscriptions.append((self.t_cmd, 1))
        return self.client

    def release_sensing(self):
        """Drop the sampler, drivers, detection and the HAL's sensor emulation from the
        heap (their state lives in RTC memory); the next sample loads them again."""
        self.sampler = self.detect = None
        self.hal.release_sensors()
        for name in list(sys.modules):
            if name.startswith("drivers.") or name in ("node.sensors", "node.detect"):
                del sys.modules[name]
                pkg, _, attr = name.partition(".")
                try:
                    delattr(sys.modules[pkg], attr)
                except (KeyError, AttributeError):
                    pass
        gc.collect()

    def log(self, msg):
        print("%s %s" % (self.id, msg))

    def uptime_s(self):
        return max(0, (self.hal.local_ms() - self.mem.get("boot_ms", 0)) // 1000)

    def shrink_batches(self):
        """After a MemoryError while building a batch: everything is still in the flash
        queue, so send smaller batches instead of crashing."""
        self.batch_items = max(1, self.batch_items // 2)
        self.mem["batch"] = self.batch_items
        self.log("error heap: batches of %d from now on" % self.batch_items)
        gc.collect()

    def note_heap(self):
        """Record the live heap (after a collection) at a checkpoint; the high-water mark
        is printed before deep sleep and read by bench/firmware_heap.py."""
        gc.collect()
        used = gc.mem_alloc()
        if used > self.heap_peak:
            self.heap_peak = used

    # -- readings --------------------------------------------------------------------
    def _stamp(self, obj):
        epoch = self.hal.epoch_ms()
        if epoch is not None:
            obj["ts"] = epoch
        else:
            obj["l"] = self.hal.local_ms()   # local clock; age_ms is computed when sent
        return obj

    def _next_seq(self):
        seq = self.seq
        self.seq += 1
        return seq

    def _enqueue(self, queue, obj):
        self.hal.note_taken(obj["boot"], obj["seq"])
        if queue.push(json.dumps(obj).encode()):
            self.counters["dropped"] += 1
            files.write_json(COUNTERS_FILE, self.counters)
            if self.counters["dropped"] % 50 == 1:
                self.log("error queue full: dropped=%d" % self.counters["dropped"])

    def take_reading(self):
        """Sample every sensor, run detection, queue the events and the reading."""
        if self.sampler is None:
            from node.detect import Detection
            from node.sensors import Sampler
            cfg = self.cfg
            self.detect = Detection(self.kind, cfg["thresholds"], cfg["calibration"],
                                    self.mem["det"])
            self.sampler = Sampler(self.kind, cfg, self.hal, self.log)
        fields = self.sampler.read()
        events = self.detect.update(fields)
        fields["uptime_s"] = self.uptime_s()
        for name, state, value in events:
            obj = {"boot": self.boot, "seq": self._next_seq(), "event": name, "state": state,
                   "fields": fields}
            if value is not None:
                obj["value"] = value
            self._enqueue(self.ev, self._stamp(obj))
            self.log("event %s %s %s" % (name, state, value))
        self._enqueue(self.tm, self._stamp({"boot": self.boot, "seq": self._next_seq(),
                                            "fields": fields}))

    def _time_of(self, obj):
        if "ts" in obj:
            return obj["ts"], None
        age = self.hal.local_ms() - obj.pop("l")
        return None, max(0, min(MAX_AGE_MS, age))

    # -- messages --------------------------------------------------------------------
    def _status(self, state):
        from protocols import codec
        interval = self.cfg["interval_s"]
        if state == "offline":
            return codec.encode_status(self.id, self.kind, self.boot, max(0, self.seq - 1), state)
        return codec.encode_status(
            self.id, self.kind, self.boot, max(0, self.seq - 1), state, fw=FW_VERSION,
            interval_s=interval if interval >= 5 else None, reset=self.reset,
            ts=self.hal.epoch_ms())

    def ack(self, cmd_id, ok, error=None, result=None):
        from protocols import codec
        return codec.encode_ack(self.id, self.kind, self.boot, max(0, self.seq - 1), cmd_id,
                                ok, error=error, result=result)

    def _on_message(self, topic, payload):
        if topic == self.t_cmd and len(self.inbox) < 8:
            self.inbox.append(payload)

    async def on_connect(self):
        if not self.hal.epoch_ms():
            self.hal.sync_time()
        await self.client.publish(self.t_status, self._status("online"), retain=True)
        self.log("connected %s:%d session=%d" % (self.client.host, self.client.port,
                                                  self.client.session_present))

    async def run_commands(self):
        if not self.inbox:
            return
        # Loaded on the first command only: most wake-ups carry none.
        from node import commands
        while self.inbox:
            ack, reboot = commands.handle(self, self.inbox.pop(0))
            if ack is not None:
                await self.client.publish(self.t_ack, ack)
            self.reboot = self.reboot or reboot

    def _batch(self, lines):
        """A telemetry batch (codec.encode_batch's envelope, SPEC 3.3) built straight into
        one bytearray from the queued lines, which already are batch items: only a line
        stamped with the local clock is decoded, to turn "l" into "age_ms". Going through
        codec.encode_batch would hold every item as a dict plus json.dumps' growing buffer,
        which is the node's heaviest moment; this holds the lines and the payload only."""
        last = json.loads(lines[-1])
        for i in range(len(lines)):
            if b'"l":' in lines[i]:
                obj = json.loads(lines[i])
                ts, age = self._time_of(obj)
                obj["age_ms"] = age
                lines[i] = json.dumps(obj).encode()
        from protocols.topics import VERSION
        head = ('{"v":%d,"node":"%s","kind":"%s","boot":%d,"seq":%d,"batch":[' % (
            VERSION, self.id, self.kind, last["boot"], last["seq"])).encode()
        size = len(head) + 2
        for line in lines:
            size += len(line) + 1
        out = bytearray(size - 1)
        view = memoryview(out)
        view[:len(head)] = head
        pos = len(head)
        for line in lines:
            if pos > len(head):
                out[pos] = 44           # ","
                pos += 1
            view[pos:pos + len(line)] = line
            pos += len(line)
        view[pos:] = b"]}"
        return out

    async def drain(self):
        """Publish everything queued: events first, one per message (SPEC 5.1), then
        telemetry in batches. A record leaves the queue only after its PUBACK."""
        from protocols import codec
        sent_ev = sent_tm = 0
        while len(self.ev):
            obj = json.loads(self.ev.peek(1)[0])
            ts, age = self._time_of(obj)
            payload = codec.encode_event(
                self.id, self.kind, obj["boot"], obj["seq"], obj["event"], obj["state"],
                value=obj.get("value"), ts=ts, age_ms=age, fields=obj.get("fields"))
            await self.client.publish(self.t_event, payload)
            self.ev.pop(1)
            sent_ev += 1
        while len(self.tm):
            lines = self.tm.peek(self.batch_items, BATCH_BYTES)
            n = len(lines)
            if n == 1:
                obj = json.loads(lines[0])
                ts, age = self._time_of(obj)
                payload = codec.encode_reading(self.id, self.kind, obj["boot"], obj["seq"],
                                               obj["fields"], ts=ts, age_ms=age)
                obj = None
            else:
                payload = self._batch(lines)
            lines = None
            self.note_heap()
            await self.client.publish(self.t_telemetry, payload)
            payload = None
            self.tm.pop(n)
            sent_tm += n
        if sent_ev or sent_tm:
            self.published += sent_ev + sent_tm
            self.log("published tm=%d ev=%d queued=%d dropped=%d" % (
                sent_tm, sent_ev, len(self.tm) + len(self.ev), self.counters["dropped"]))

    # -- schedules -------------------------------------------------------------------
    def run(self):
        try:
            # Only the schedule in use is loaded (every module costs heap).
            if self.cfg["schedule"] == "duty-cycled":
                from node import duty_cycle as schedule
            else:
                from node import always_on as schedule
            asyncio.run(schedule.run(self))
        except KeyboardInterrupt:
            raise
        except SystemExit:
            raise
        except Exception as err:
            self.log("error fatal: %r" % (err,))
            self.hal.fatal(err)
