# ESP32: RTC slow memory (8 KB, 2 KB of it for MicroPython's RTC().memory()) keeps the
# node's counters through deep sleep; ext0 wakes on the leak probe and the cover switch.
import json

import esp32
import machine

from hal.board import BoardHAL, PIN_WAKE_KINDS

# What the reset says on an ESP32 (ports/esp32/modmachine.c, mp_machine_reset_cause):
# ESP_RST_SW (machine.reset()) and ESP_RST_PANIC (a crash) both give HARD_RESET, so the
# HAL's own marker in RTC memory tells a `reboot` command ("soft") from a crash ("hard").
_CAUSES = {
    machine.PWRON_RESET: "power",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}
# Battery on GPIO39 through a 1:2 divider; read_uv() is calibrated from the chip's eFuse
# values (docs/esp32/quickref.rst, "ADC"), read_u16() with a constant is not.
BATTERY_DIVIDER = 2.0


def _adc(pin):
    # ATTN_11DB: 150-2450 mV (docs/esp32/quickref.rst); the default 0 dB saturates near
    # 950 mV, below most of the probes' range and the divided battery.
    return machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB)


class HAL(BoardHAL):
    name = "esp32"
    WDT_MAX_MS = 60000
    # Default wiring of the urbansense ESP32 node board; config "pins" overrides any.
    # ADC inputs are on ADC block 1 (GPIO 32-39): block 2 cannot be read while Wi-Fi is
    # on (docs/esp32/quickref.rst, "ADC"). The cover line (GPIO27) has a 1 MOhm pull-up on
    # the board, so the internal one can be off in deep sleep (deepsleep() below).
    PINS = {"i2c": (22, 21), "uart_pm": (17, 16), "uart_co2": (26, 25),
            "adc_ch4": 34, "adc_h2s": 35, "adc_level": 32, "adc_no2": 33, "adc_leak": 36,
            "battery": 39, "cover": 27, "distance": (5, 18), "wake": 27}
    # UART0 is the REPL console; UART1 and UART2 take any pins (docs/esp32/quickref.rst).
    UARTS = {"pm": 1, "co2": 2}

    def start(self):
        raw = machine.reset_cause()
        marker = self.rtc.pop("reset", None)
        self.rtc.pop("clock_ms", None)   # the clock survived: nothing to carry
        if raw == machine.HARD_RESET:
            cause = "soft" if marker == "soft" else "hard"
        else:
            cause = _CAUSES.get(raw, "hard")
        if cause != "deepsleep":
            # The RTC timer runs through every reset but power-on (ESP-IDF "System Time"),
            # and after a power-on RTC memory is gone with it.
            self.keep_after_reset(cause == "power")
        return cause

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

    def wake_reason(self):
        reason = machine.wake_reason()
        if reason in (machine.EXT0_WAKE, machine.EXT1_WAKE):
            return "pin"
        return "timer" if reason == machine.TIMER_WAKE else None

    def battery_v(self):
        cal = self.cfg["calibration"].get("battery", {})
        adc = _adc(self.pins["battery"])
        return adc.read_uv() * cal.get("divider", BATTERY_DIVIDER) / 1e6

    def adc(self, name):
        return _adc(self.pins["adc_" + name])

    def deepsleep(self, ms):
        if self.cfg["kind"] in PIN_WAKE_KINDS:
            # ext0 is level-triggered (ESP-IDF esp_sleep_enable_ext0_wakeup): armed on the
            # level the line already has, the sleep ends at once, over and over while a
            # leak lasts. Armed on the other level than the last sample saw, it wakes on a
            # change only, and the timer keeps the interval.
            # pull=None: an internal pull-up left on conducts through the closed switch all
            # through deep sleep (docs/esp32/quickref.rst, "Deep-sleep mode"). The stubs
            # type pull as int only; ports/esp32/machine_pin.c takes None for "no pull".
            pin = machine.Pin(self.pins["wake"], machine.Pin.IN, None)  # type: ignore[arg-type]
            # The stubs make wake_on_ext0's arguments positional only; ports/esp32/
            # modesp32.c parses them as keywords (pin=, level=).
            esp32.wake_on_ext0(pin=pin, level=self.wake_level())  # type: ignore[call-overload]
        self.rtc_write()
        print("%s deepsleep %d" % (self.cfg["node"], ms))
        machine.deepsleep(ms)
