# ESP32: RTC slow memory (8 KB, 2 KB of it for MicroPython's RTC().memory()) keeps the
# node's counters through deep sleep; ext0/ext1 wake on the leak probe and cover switch.
import json

import esp32
import machine

from hal.board import BoardHAL

_CAUSES = {
    machine.PWRON_RESET: "power",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}


class HAL(BoardHAL):
    name = "esp32"
    WDT_MAX_MS = 60000
    # Default wiring of the urbansense ESP32 node board; config "pins" overrides any.
    PINS = {"i2c": (22, 21), "uart_pm": (17, 16), "uart_co2": (26, 25),
            "adc_ch4": 34, "adc_h2s": 35, "adc_level": 32, "adc_no2": 33, "adc_leak": 36,
            "battery": 39, "cover": 27, "distance": (5, 18), "wake": 27}

    def __init__(self, cfg):
        BoardHAL.__init__(self, cfg)
        self.cause = _CAUSES.get(machine.reset_cause(), "hard")
        if self.cause != "deepsleep":
            # Only deep sleep keeps RTC memory meaningful for the node.
            self.rtc = {k: v for k, v in self.rtc.items() if k == "ntp_offset_ms"}

    def rtc_read(self):
        raw = machine.RTC().memory()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}   # garbage after a brown-out: start clean

    def rtc_write(self):
        data = json.dumps(self.rtc)
        if len(data) > 2048:
            # RTC().memory() holds 2 KB: drop detector state rather than fail the sleep.
            self.rtc.pop("det", None)
            data = json.dumps(self.rtc)
        machine.RTC().memory(data)

    def reset_cause(self):
        return self.cause

    def wake_reason(self):
        reason = machine.wake_reason()
        if reason in (machine.EXT0_WAKE, machine.EXT1_WAKE):
            return "pin"
        return "timer" if reason == machine.TIMER_WAKE else None

    def deepsleep(self, ms):
        self.rtc_write()
        if self.cfg["kind"] in ("leak", "manhole"):
            # Leak probe comparator / cover reed switch pull the wake pin high.
            esp32.wake_on_ext0(pin=machine.Pin(self.pins["wake"], machine.Pin.IN), level=1)
        print("%s deepsleep %d" % (self.cfg["node"], ms))
        machine.deepsleep(ms)
