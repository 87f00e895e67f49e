# Raspberry Pi Pico W (RP2040): no RTC memory that survives its "deep sleep", which is a
# lightsleep followed by a reset, so the node's counters go to a flash file instead; its
# watchdog tops out near 8.3 s.
import json
import os

import machine

from hal.board import BoardHAL

RTC_FILE = "rtc.json"


class HAL(BoardHAL):
    name = "rp2"
    WDT_MAX_MS = 8300
    PINS = {"i2c": (5, 4), "uart_pm": (0, 1), "uart_co2": (8, 9),
            "adc_ch4": 26, "adc_h2s": 27, "adc_level": 28, "adc_no2": 28, "adc_leak": 26,
            "battery": 29, "cover": 15, "distance": (14, 13), "wake": 15}

    def __init__(self, cfg):
        BoardHAL.__init__(self, cfg)
        sleeping = self.rtc.pop("sleep_ms", None) is not None
        cause = machine.reset_cause()
        if sleeping:
            self.cause = "deepsleep"
        elif cause == machine.WDT_RESET:
            self.cause = "watchdog"
        else:
            self.cause = "power" if cause == machine.PWRON_RESET else "hard"
        self.rtc_write()   # the sleep marker is consumed: a later reset is not a wake

    def rtc_read(self):
        try:
            with open(RTC_FILE) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def rtc_write(self):
        with open(RTC_FILE + ".tmp", "w") as f:
            json.dump(self.rtc, f)
        os.rename(RTC_FILE + ".tmp", RTC_FILE)

    def reset_cause(self):
        return self.cause

    def wake_reason(self):
        return self.rtc.get("wake") if self.cause == "deepsleep" else None

    def deepsleep(self, ms):
        self.rtc["sleep_ms"] = ms
        self.rtc_write()
        print("%s deepsleep %d" % (self.cfg["node"], ms))
        wake = machine.Pin(self.pins["wake"], machine.Pin.IN, machine.Pin.PULL_DOWN)
        if self.cfg["kind"] in ("leak", "manhole") and wake.value():
            ms = 0   # the wake pin is already active: go round again now
        # An enabled pin interrupt ends a lightsleep early (the pin wake).
        wake.irq(trigger=machine.Pin.IRQ_RISING, handler=lambda pin: None)
        # lightsleep stops the clocks; sleep in slices short enough to feed the watchdog
        # (8.3 s at most), then reset, as the port's deepsleep does, so the node starts
        # clean like after an ESP32 deep sleep.
        left = ms
        while left > 0 and not wake.value():
            chunk = min(left, self.WDT_MAX_MS - 1300)
            machine.lightsleep(chunk)
            self.wdt_feed()
            left -= chunk
        self.rtc["wake"] = "pin" if wake.value() else "timer"
        self.rtc_write()
        machine.reset()
