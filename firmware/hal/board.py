# What the two real boards (ESP32, Raspberry Pi Pico W) share: Wi-Fi, NTP as an offset
# over a local clock that never jumps back within a boot, reset causes told apart by a
# marker kept in RTC memory, the buses, the watchdog, the pin wake, and the HIL console
# (config "hil": true) whose stimuli override sensor values (firmware/README.md, contract 3).
# Each behaviour of a port it relies on is named with its MicroPython source in the board
# modules (hal/esp32.py, hal/rp2.py); tests/firmware/boards runs both under the unix port
# with stand-ins for machine, esp32, rp2, network and ntptime that follow those sources.
import sys
import time

import machine
import network


# Stimulus overrides a board understands: catalog fields, plus `wet` for the leak probe.
WET_CONDUCTANCE = 2600.0
DRY_CONDUCTANCE = 150.0
# RTC memory keys ending in this hold an epoch offset measured against local_ms(): they
# mean nothing once the local clock restarted, and the board HALs drop them then.
OFFSET_SUFFIX = "_offset_ms"
# Kinds whose sensor also wakes the node from deep sleep (leak probe, cover switch).
PIN_WAKE_KINDS = ("leak", "manhole")
# A streaming sensor's frame is read by length with a deadline (drivers/frames.py): each
# read waits this long for a first byte, then this long between bytes, and returns.
UART_TIMEOUT_MS = 100
UART_TIMEOUT_CHAR_MS = 10


class Ranger:
    """HC-SR04 on two pins: a 10 us trigger, then time the echo."""

    def __init__(self, trig, echo):
        self.trig = machine.Pin(trig, machine.Pin.OUT, value=0)
        self.echo = machine.Pin(echo, machine.Pin.IN)

    def echo_us(self, timeout_us):
        self.trig.value(1)
        time.sleep_us(10)
        self.trig.value(0)
        return machine.time_pulse_us(self.echo, 1, timeout_us)


class BoardHAL:
    name = "board"
    WDT_MAX_MS = 60000
    PINS = {}
    UARTS = {}    # sensor name -> UART id on this chip

    def __init__(self, cfg):
        self.cfg = cfg
        self.pins = dict(self.PINS)
        self.pins.update(cfg.get("pins") or {})
        self.stimuli = {}
        self.net_forced_down = False
        self._wdt = None
        self._wdt_ms = self.WDT_MAX_MS
        self._i2c = None
        self.wlan = network.WLAN(network.STA_IF)
        self.rtc = self.rtc_read()
        # Added to the chip's clock so that local_ms() runs on across a reset the HAL made
        # itself (hal/rp2.py); 0 where the clock survives resets (hal/esp32.py).
        self._carry_ms = 0
        self.cause = self.start()
        self.rtc_write()   # the markers are consumed: a later reset is not taken for this one
        self._stdin_poll = None
        if cfg.get("hil"):
            # The console and TLS helpers are loaded only by the nodes that use them.
            from hal import common
            self._stdin_poll = common.console_poller()

    # -- platform specifics (subclasses)
    def start(self):
        """Tell why the chip started, set up the clock carry, trim RTC memory to what the
        reset kept. Returns the reset cause."""
        return "hard"

    def rtc_read(self):
        return {}

    def rtc_write(self):
        pass

    def keep_after_reset(self, clock_restarted):
        """RTC memory after a reset that was no wake from deep sleep: the node starts a new
        boot, so only the epoch offsets stay, and those only while the clock they were
        measured against runs on."""
        if clock_restarted:
            self.rtc = {}
        else:
            self.rtc = {k: v for k, v in self.rtc.items() if k.endswith(OFFSET_SUFFIX)}

    # -- reset, RTC memory
    def reset_cause(self):
        return self.cause

    def rtc_load(self):
        return self.rtc

    def rtc_save(self, mem):
        self.rtc.update(mem)
        self.rtc_write()

    def reset(self):
        self.restart("soft")

    def fatal(self, err):
        sys.print_exception(err)
        # Give a technician on the console time to read it, then start afresh.
        time.sleep(5)
        self.restart("hard")

    def restart(self, why):
        """machine.reset(), leaving in RTC memory why (and the clock at that moment): the
        ports report machine.reset() as a hard (ESP32) or watchdog (rp2) reset, the same
        as a crash or a hang."""
        self.rtc["reset"] = why
        self.rtc["clock_ms"] = self.local_ms()
        self.rtc_write()
        machine.reset()

    def wdt_start(self, ms):
        self._wdt_ms = min(ms, self.WDT_MAX_MS)
        self._wdt = machine.WDT(timeout=self._wdt_ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    # -- time: a local clock that never jumps back within a boot, plus an NTP offset kept
    # in RTC memory, so the age of a reading taken before the sync is still right after it.
    def local_ms(self):
        return time.time_ns() // 1000000 + self._carry_ms

    def epoch_ms(self):
        offset = self.rtc.get("ntp" + OFFSET_SUFFIX)
        return None if offset is None else self.local_ms() + offset

    def sync_time(self):
        try:
            import ntptime
            # ntptime.time() resolves its host and waits up to ntptime.timeout: both block,
            # so the watchdog gets its whole period first.
            self.wdt_feed()
            # ntptime.time() counts from the port's epoch (2000 or 1970): normalise.
            unix = ntptime.time() + (946684800 if time.gmtime(0)[0] == 2000 else 0)
            self.rtc["ntp" + OFFSET_SUFFIX] = unix * 1000 - self.local_ms()
            return True
        except Exception as err:   # OSError on timeout, or no DNS yet
            print("%s error ntp: %r" % (self.cfg["node"], err))
            return False

    def set_epoch(self, epoch_ms):
        # The time from a fresh receipt of the edge (SPEC 7.1.4), kept as the NTP offset,
        # under its key: the latest sync wins, and it is dropped with it when the local
        # clock restarts (keep_after_reset, the ports' start()).
        self.rtc["ntp" + OFFSET_SUFFIX] = epoch_ms - self.local_ms()

    # -- network
    def connect_network(self, timeout_ms=10000):
        if self.net_forced_down:
            return False
        if not self.wlan.isconnected():
            self.wlan.active(True)
            wifi = self.cfg["wifi"]
            try:
                self.wlan.connect(wifi["ssid"], wifi.get("password"))
            except OSError as err:
                # "Wifi Internal Error" when a connect is already in progress: keep waiting.
                print("%s error wifi: %r" % (self.cfg["node"], err))
            start = time.ticks_ms()
            while not self.wlan.isconnected():
                if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                    print("%s error wifi: no connection to %s" % (self.cfg["node"], wifi["ssid"]))
                    return False
                self.wdt_feed()
                time.sleep_ms(100)
        return self.resolve(self.cfg["broker"]["host"])

    def resolve(self, host):
        """Look a broker name up once, with the watchdog just fed: a lookup blocks (lwIP's
        resolver retries for seconds), and asyncio.open_connection would do it inside the
        event loop; done here, the client's own lookup is answered from lwIP's cache."""
        if not host or host[0] in "0123456789[":
            return True   # an address: nothing to look up
        import socket
        self.wdt_feed()
        try:
            socket.getaddrinfo(host, 0)
            return True
        except OSError as err:
            print("%s error dns: %s: %r" % (self.cfg["node"], host, err))
            return False

    def link_up(self):
        self.poll()
        return not self.net_forced_down and self.wlan.isconnected()

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except Exception:   # not connected: the driver raises instead of returning None
            return None

    def battery_v(self):
        """The battery's voltage (subclasses: each board reads it its own way)."""
        return 0.0

    def ssl_context(self, ca):
        from hal import common
        return common.ssl_context(ca)

    # -- HIL console
    def poll(self):
        if self._stdin_poll is None:
            return
        from hal import common
        still_open, net = common.serve_console(self._stdin_poll, self.stimuli)
        if not still_open:
            self._stdin_poll = None
        if net is not None:
            self.net_forced_down = not net
            if not net:
                self.wlan.disconnect()

    def override(self, fields):
        """Apply HIL stimuli over what the sensors read."""
        for name in self.stimuli:
            value = self.stimuli[name]
            if name == "wet":
                fields["conductance"] = WET_CONDUCTANCE if value else DRY_CONDUCTANCE
            elif name == "tilt_deg":
                fields.pop("_acc", None)
                fields["tilt_deg"] = value
            else:
                fields[name] = value

    def note_taken(self, boot, seq):
        pass   # only the sim keeps a ground-truth log for its harness

    def checkpoint(self, name):
        pass   # only the sim can cut its power at a named moment (fault tests)

    # -- buses: the drivers' view of the chip (sensors()); the sim returns its world instead
    def sensors(self):
        return self

    def before_sample(self):
        self.poll()
        if self.cfg["kind"] in PIN_WAKE_KINDS:
            # What the wake pin said when the node last looked: the next deep sleep wakes
            # on a change from it, not on a level that lasts (a leak, an open cover).
            self.rtc["wake_level"] = self.wake_pin().value()

    def release_sensors(self):
        pass   # the buses are the chip's; the drivers that used them are dropped by the node

    def uart(self, name):
        tx, rx = self.pins["uart_" + name]
        # Opening (or re-opening) a UART empties its receive buffer on both ports
        # (ports/rp2/machine_uart.c allocates a new ring buffer, ports/esp32/machine_uart.c
        # calls uart_flush_input), so a frame read after it is a fresh one.
        return machine.UART(self.UARTS[name], baudrate=9600, tx=tx, rx=rx,
                            timeout=UART_TIMEOUT_MS, timeout_char=UART_TIMEOUT_CHAR_MS)

    def i2c(self):
        if self._i2c is None:
            scl, sda = self.pins["i2c"]
            self._i2c = machine.I2C(0, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=100000)
        return self._i2c

    def adc(self, name):
        return machine.ADC(machine.Pin(self.pins["adc_" + name]))

    def pin(self, name):
        return machine.Pin(self.pins[name], machine.Pin.IN, machine.Pin.PULL_UP)

    def wake_pin(self):
        """The wake line as the node reads it: the cover's reed switch closes it to ground
        (pull-up: 1 = open); the leak comparator drives it (1 = wet)."""
        return machine.Pin(self.pins["wake"], machine.Pin.IN, machine.Pin.PULL_UP)

    def wake_level(self):
        """The level the next sleep wakes on: the other one than the last sample saw."""
        last = self.rtc.get("wake_level")
        return 1 if last is None else 1 - last

    def ranger(self, name):
        trig, echo = self.pins[name]
        return Ranger(trig, echo)
