# Raspberry Pi Pico W (RP2040): no RTC memory that survives its "deep sleep", which is a
# lightsleep followed by a reset, so the node's counters go to a flash file instead; its
# watchdog tops out near 8.3 s.
#
# Its clock restarts at every reset: ports/rp2/main.c sets the RTC to 2021-01-01 00:00
# on each boot, and machine.reset() is a watchdog reboot (ports/rp2/modmachine.c). So
# before each reset it makes, the HAL writes down what local_ms() read, and the next boot
# carries on from there; after a reset it did not make (power-on, a real watchdog reset)
# the clock starts afresh and the epoch offsets measured against the old one are dropped.
import json
import os
import time

import machine

from hal.board import BoardHAL, PIN_WAKE_KINDS

RTC_FILE = "rtc.json"
# VSYS on GPIO29 (ADC3) through the Pico W's 1:3 divider (Pico W datasheet, "Power").
VSYS_DIVIDER = 3.0


class HAL(BoardHAL):
    name = "rp2"
    WDT_MAX_MS = 8300
    # UART0 takes TX on GPIO 0/12/16/28 and RX on 1/13/17/29, UART1 TX on 4/8/20/24 and
    # RX on 5/9/21/25; there is no UART2 (ports/rp2/machine_uart.c, IS_VALID_TX/RX).
    PINS = {"i2c": (5, 4), "uart_pm": (0, 1), "uart_co2": (8, 9),
            "adc_ch4": 26, "adc_h2s": 27, "adc_level": 28, "adc_no2": 28, "adc_leak": 26,
            "battery": 29, "cover": 15, "distance": (14, 13), "wake": 15}
    UARTS = {"pm": 0, "co2": 1}
    radio = False   # the CYW43 is powered up by the first WLAN.active(True) of a boot

    def start(self):
        raw = machine.reset_cause()
        why = self.rtc.pop("reset", None)
        clock = self.rtc.pop("clock_ms", None)
        self._wake = self.rtc.pop("wake", None)
        if raw == machine.WDT_RESET and why is not None and clock is not None:
            # Our own reset: carry the clock on from what it read then (the RTC counts
            # from 2021-01-01 since this boot began).
            self._carry_ms = clock - time.mktime((2021, 1, 1, 0, 0, 0, 0, 0)) * 1000
            cause = why
            if cause != "deepsleep":
                self.keep_after_reset(False)
        else:
            # PWRON_RESET, or WDT_RESET without our marker: the rp2 port knows no others.
            # A power cut during the emulated deep sleep leaves the marker in flash, but
            # the reset says power-on.
            cause = "watchdog" if raw == machine.WDT_RESET else "power"
            self._wake = None
            self.keep_after_reset(True)
        self._read_vsys()   # the Wi-Fi chip is off until the node connects
        return cause

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

    def wake_reason(self):
        return self._wake if self.cause == "deepsleep" else None

    def connect_network(self, timeout_ms=10000):
        self.radio = True
        return BoardHAL.connect_network(self, timeout_ms)

    def battery_v(self):
        if not self.radio:
            self._read_vsys()
        return self.rtc.get("vsys", 0.0)

    def _read_vsys(self):
        """GPIO29 is also the Wi-Fi chip's SPI clock on a Pico W: read with the radio on,
        ADC(Pin(29)) takes the pin from the driver (micropython issue 10406 reads ~0.03 V;
        pico-sdk boards/pico_w.h, CYW43_USES_VSYS_PIN). So it is read only while the radio
        is off (a duty-cycled node samples before it connects), and the last reading
        stands in for it while the radio is on."""
        cal = self.cfg["calibration"].get("battery", {})
        counts = machine.ADC(machine.Pin(self.pins["battery"])).read_u16()
        self.rtc["vsys"] = round(counts * 3.3 / 65535 * cal.get("divider", VSYS_DIVIDER), 3)

    def radio_off(self):
        """Power the Wi-Fi chip down: with it on, a pending Wi-Fi poll ends every lightsleep
        at once (ports/rp2/modmachine.c, mp_machine_lightsleep) and the radio drains the
        battery. WLAN.deinit() powers the CYW43 off (extmod/network_cyw43.c)."""
        try:
            self.wlan.disconnect()
            self.wlan.active(False)
            self.wlan.deinit()
        except (AttributeError, OSError):
            pass
        self.radio = False

    def deepsleep(self, ms):
        print("%s deepsleep %d" % (self.cfg["node"], ms))
        self.radio_off()
        wake = None
        if self.cfg["kind"] in PIN_WAKE_KINDS:
            wake = self.wake_pin()
            level = self.wake_level()
            # Any enabled interrupt ends a lightsleep (WFI); the loop below checks the
            # level itself, so the handler has nothing to do.
            wake.irq(handler=_ignore,
                     trigger=machine.Pin.IRQ_RISING if level else machine.Pin.IRQ_FALLING)
        # lightsleep stops the clocks; sleep in slices well inside the watchdog's period,
        # counting the time that really passed (a lightsleep may end early), then reset,
        # as the port's own deepsleep does, so the node starts clean like an ESP32's.
        start = time.ticks_ms()
        while True:
            if wake is not None and wake.value() == level:
                woke = "pin"
                break
            left = ms - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                woke = "timer"
                break
            machine.lightsleep(min(left, self._wdt_ms // 2))
            self.wdt_feed()
        self.rtc["wake"] = woke
        self.restart("deepsleep")


def _ignore(pin):
    pass
