# The node: sample -> detect -> offline queue (flash) -> MQTT, on one of two schedules.
#
# Every reading and event is written to the offline queue before anything is sent, and
# leaves it only when a receipt of the edge covers it (node/receipts.py; the broker's
# PUBACK only marks it sent): a reset, a power cut, an outage or a broker that loses what
# it acknowledged costs nothing (at least once; the receivers deduplicate on
# (node, boot, seq)).
# The schedules drive a Node: node/always_on.py (mains power) and node/duty_cycle.py
# (batteries); only the one in use is loaded.
#
# Heap is the budget (loaded bytecode lives in the heap): the node's three phases
# (node/__init__.py: PHASES) need not be resident together. Sampling is loaded on the
# first sample and released by release_sensing; publishing is loaded on the first
# connect (make_client) and released by drop_link; commands, stored in flash as they
# arrive, run with the MQTT client out of the heap (run_commands). A duty-cycled node
# samples, releases sensing, connects, disconnects, applies the receipts it received,
# then runs the commands it received in a wake of their own.
import gc
import time

from micropython import const

import files
from node import COUNTERS_FILE, drop, load
from node.queue import FlashQueue

BOOT_FILE = "state/boot"
_BATCH_ITEMS = const(4)     # halved after a MemoryError (see shrink_batches)
_RX_BYTES = const(1200)     # a command (1 KiB at most) with its topic and header
_CMD_QUEUE_MAX = const(16)  # commands waiting to run (beyond it the oldest is dropped)


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
            mem["fs"] = 0       # the birth's first_seq: nothing of this boot confirmed
            mem["boot_ms"] = hal.local_ms()
        self.boot = boot
        self.mem = mem
        self.reset = cause
        self.counters = files.read_json(COUNTERS_FILE, {"dropped": 0})
        self.ev = FlashQueue("queue/ev", cfg["queue_max"])
        self.tm = FlashQueue("queue/tm", cfg["queue_max"])
        # Commands received and not yet run, and the answers not yet sent (node/commands.py).
        self.cmds = FlashQueue("queue/cmd", _CMD_QUEUE_MAX)
        self.acks = FlashQueue("queue/ack", _CMD_QUEUE_MAX)
        self.detect = None        # loaded with the sampler on the first sample
        self.sampler = None
        self.link = None          # made by make_client() before the first connect
        self.topics = None        # the link's topics, made with the boot's first link
        self.parked = False       # the last connection ended with a clean DISCONNECT
        self.inbox = []           # receipts received, not applied yet: (payload, local ms)
        self.probe = None         # [boot, seq, local ms]: first sent on this connection
        # The receive buffer of every MQTT client of this boot (a command is at most 1 KiB,
        # SPEC section 7): made now, while the heap is whole; a connect after phases have
        # come and gone may find no 1200 contiguous bytes.
        self.rx = bytearray(_RX_BYTES)
        # A reboot a command asked for on the wake before (duty cycle), not yet done.
        self.reboot = bool(mem.pop("reboot", False)) and cause == "deepsleep"
        self.sample_now = False   # a `sample` command asked for a reading
        self.published = 0
        self.heap_peak = 0
        # Halved after a MemoryError (a fragmented heap), kept through deep sleep.
        self.batch_items = mem.get("batch", _BATCH_ITEMS)
        self.log("boot %d reset=%s kind=%s schedule=%s queued=%d" % (
            boot, cause, self.kind, cfg["schedule"], len(self.ev) + len(self.tm)))

    def make_client(self):
        """The publishing phase (node/link.py: MQTT client, messages, replay of the
        queue), loaded on the first connect. Returns the MQTT client."""
        if self.link is None:
            self.link = load("publishing").Link(self)
        return self.link.client

    async def park(self):
        """Disconnect cleanly (no will: nothing is lost, commands wait at the broker in
        the persistent session) and release the publishing phase."""
        if self.link is not None:
            client = self.link.client
            if client.connected:
                await client.disconnect()
                self.parked = True
            else:
                await client.close()
        self.drop_link()

    def drop_link(self):
        """Release the publishing phase (call with the client closed or disconnected)."""
        self.link = None
        drop("publishing")

    def run_commands(self):
        """The command phase: run what the link stored in the command queue (their
        answers wait in the ack queue for the next connect), then drop its code.
        Returns True if a `sample` command asked for a reading (taken by the schedule
        once this phase's code is gone)."""
        self.hal.checkpoint("commands")   # received and acked, not run yet
        self.topics = None   # made again by the next link: the commands need the room
        load("commands").run_pending(self)
        self.note_heap()
        drop("commands", "protocols")
        asked, self.sample_now = self.sample_now, False
        return asked

    def release_sensing(self):
        """Drop the sampler, drivers, detection and the HAL's sensor emulation from the
        heap (their state lives in RTC memory); the next sample loads them again."""
        self.sampler = self.detect = None
        self.hal.release_sensors()
        drop("sampling")

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

    def take_reading(self):
        """Sample every sensor, run detection, queue the events and the reading. The code
        is node/sensors.py's, loaded with the sensors and released with them."""
        load("sampling").take_reading(self)

    # -- schedules -------------------------------------------------------------------
    def run(self):
        try:
            # Only the schedule in use is loaded (every module costs heap).
            if self.cfg["schedule"] == "duty-cycled":
                from node import duty_cycle as schedule
            else:
                from node import always_on as schedule
            schedule.run(self)
        except KeyboardInterrupt:
            # Stopped from the console (hal/common.py): the technician's soft reset
            # follows, not a crash. The sim HAL, which keeps its reset cause itself,
            # records that.
            if hasattr(self.hal, "console_stop"):
                self.hal.console_stop()
            raise
        except SystemExit:
            raise
        except Exception as err:
            self.log("error fatal: %r" % (err,))
            self.hal.fatal(err)
