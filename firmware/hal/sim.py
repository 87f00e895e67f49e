# The sim HAL: the node on the MicroPython unix port, its working folder playing the flash
# (firmware/README.md, contracts 2 and 3). Sensors are driven by a seeded synthetic world
# (cars arriving and leaving, a daily PM2.5 curve, occasional leaks, a cover lifted) or by
# stimuli from control.json; either way the HAL hands the drivers the bytes the real part
# would send, so parsing and detection run exactly as on a board.
import os
import sys
import time

import files   # atomic writes, as the node does for its own files


RTC_FILE = "rtc.json"
CONTROL_FILE = "control.json"
TAKEN_FILE = "taken.log"
WDT_FILE = "wdt"                # the watchdog's heartbeat: holds its timeout in ms
WDT_RESET_FILE = "wdt.reset"    # left by the supervisor when the watchdog reset the node
SLEEP_EXIT = 75
REBOOT_EXIT = 76
POWER_CUT_EXIT = 77


class HAL:
    name = "sim"

    def __init__(self, cfg):
        self.cfg = cfg
        self.kind = cfg["kind"]
        self._control_id = None
        self.net_up = True
        rtc = files.read_json(RTC_FILE, None)
        if rtc is None:
            self.cause = "power"
        elif rtc.get("sleep_ms") is not None:
            self.cause = "deepsleep"
        elif rtc.get("soft"):
            self.cause = "soft"
        else:
            self.cause = "hard"
        if files.exists(WDT_RESET_FILE):   # the supervisor's watchdog killed it
            files.remove(WDT_RESET_FILE)
            if self.cause == "hard":
                self.cause = "watchdog"
        self._wdt_ms = self._wdt_fed = None
        self.rtc = (rtc or {}).get("mem") or {}
        self.wake = os.getenv("URBANSENSE_WAKE") or ("timer" if self.cause == "deepsleep" else None)
        # From now on a kill is a hard reset: RTC memory stays, but the node did not sleep.
        files.write_json(RTC_FILE, {"mem": self.rtc})
        seed = cfg.get("seed")
        if seed is None:
            seed = sum(cfg["node"].encode()) * 7919
        seed += self.rtc.get("wakes", 0)
        self.seed = seed
        self.buses = None         # sensors(): loaded with the sampling phase
        self.stimuli = {}
        self.cut_at = self.hang_at = None
        self._stdin_poll = None
        if cfg.get("hil"):
            # The console and TLS helpers are loaded only by the nodes that use them.
            from hal import common
            self._stdin_poll = common.console_poller()
        self.poll()

    # -- reset, RTC memory, sleep
    def reset_cause(self):
        return self.cause

    def wake_reason(self):
        return self.wake

    def rtc_load(self):
        return self.rtc

    def rtc_save(self, mem):
        self.rtc.update(mem)

    def deepsleep(self, ms):
        self.rtc["wakes"] = self.rtc.get("wakes", 0) + 1
        files.write_json(RTC_FILE, {"mem": self.rtc, "sleep_ms": ms})
        print("%s deepsleep %d" % (self.cfg["node"], ms))
        sys.exit(SLEEP_EXIT)

    def reset(self):
        files.write_json(RTC_FILE, {"mem": self.rtc, "soft": True})
        sys.exit(REBOOT_EXIT)

    def fatal(self, err):
        sys.print_exception(err)
        sys.exit(1)

    def console_stop(self):
        """Ctrl-C on the console stopped the program (main.py): the restart that follows is
        the REPL's soft reset (Ctrl-D; MicroPython docs, machine.soft_reset), not a crash."""
        files.write_json(RTC_FILE, {"mem": self.rtc, "soft": True})

    # The watchdog is the supervisor's (hil/sim.py): the node feeds it by rewriting
    # WDT_FILE, whose age the supervisor watches; one older than the timeout gets the
    # process killed and started again with reset cause "watchdog", as a board's would.
    def wdt_start(self, ms):
        self._wdt_ms = ms
        self._wdt_fed = None
        self.wdt_feed()

    def wdt_feed(self):
        if self._wdt_ms is None:
            return
        now = time.ticks_ms()
        # A file write per feed would be most of a sim node's work: at most four a timeout.
        if self._wdt_fed is None or time.ticks_diff(now, self._wdt_fed) > self._wdt_ms // 4:
            with open(WDT_FILE, "w") as f:
                f.write("%d" % self._wdt_ms)
            self._wdt_fed = now

    # -- time
    def local_ms(self):
        return time.time_ns() // 1000000

    # The clock offset (epoch - local ms) lives in RTC memory, as on a board: it survives
    # deep sleep and resets, not a power cut (which deletes rtc.json); the sim's local
    # clock, the PC's, never restarts otherwise. Its key stays short: with the boards'
    # `ntp_offset_ms` a manhole node's commands wake no longer ran in 64 KB
    # (tests/firmware/test_heap.py), so little room is left there.
    def epoch_ms(self):
        offset = self.rtc.get("clock")
        return None if offset is None else self.local_ms() + offset

    def sync_time(self):
        # "NTP" works while the network is up, unless config "ntp" is false (a node that
        # never reaches an NTP server); the PC's clock is already right.
        if self.cfg.get("ntp", True) and self.link_up():
            self.rtc["clock"] = 0
        return self.epoch_ms() is not None

    def set_epoch(self, epoch_ms):
        # The time from a fresh receipt of the edge (SPEC 7.1.4).
        self.rtc["clock"] = epoch_ms - self.local_ms()

    # -- network
    def connect_network(self, timeout_ms=10000):
        return self.link_up()

    def link_up(self):
        self.poll()
        return self.net_up

    def ssl_context(self, ca):
        from hal import common
        return common.ssl_context(ca)

    # -- stimuli and faults
    def poll(self):
        """Re-read control.json when it changed (inode or mtime: it is replaced by rename)
        and, in HIL mode, answer stimulus lines on the console."""
        try:
            st = os.stat(CONTROL_FILE)
            ident = (st[1], st[8], st[6])
        except OSError:
            ident = None
        if ident != self._control_id:
            self._control_id = ident
            ctl = files.read_json(CONTROL_FILE, None) if ident else {}
            if ctl is not None:
                self.stimuli = ctl.get("stimuli") or {}
                self.net_up = ctl.get("net", "up") != "down"
                self.cut_at = ctl.get("cut")
                self.hang_at = ctl.get("hang")
        if self._stdin_poll is not None:
            from hal import common
            still_open, net = common.serve_console(self._stdin_poll, self.stimuli)
            if not still_open:
                self._stdin_poll = None
            if net is not None:
                self.net_up = net

    def checkpoint(self, name):
        """A named moment in the node's work. The harness may cut the power exactly
        there (control.json "cut"), which is how the durability of each step is tested:
        RTC memory is lost, files stay as they are; or make the node hang there
        ("hang"), for the watchdog to reset it."""
        self.poll()
        if self.hang_at == name:
            print("%s hung at %s" % (self.cfg["node"], name))
            while True:          # a hang: nothing runs, nothing feeds the watchdog
                time.sleep_ms(100)
        if self.cut_at == name:
            print("%s power cut at %s" % (self.cfg["node"], name))
            files.remove(RTC_FILE)
            sys.exit(POWER_CUT_EXIT)

    def note_taken(self, boot, seq):
        # The harness's ground truth: every reading or event the node created.
        with open(TAKEN_FILE, "a") as f:
            f.write("%d %d\n" % (boot, seq))

    # -- sensors: the synthetic world and the kind's physics are loaded with them (the
    # sampling phase, hal/sim_world.py) and released with them: the node drops their
    # modules with the rest of its sampling phase.
    def sensors(self):
        if self.buses is None:
            from hal.sim_world import Buses
            self.buses = Buses(self)
        return self.buses

    def release_sensors(self):
        self.buses = None
