# Stand-in esp32 module: what the ESP32 HAL calls of it.
import machine

# RTC pins, the only ones ext0 can watch (docs/esp32/quickref.rst, "Deep-sleep mode").
_RTC_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def wake_on_ext0(pin, level=1):
    """ports/esp32/modesp32.c: pin (None disarms) and level, by position or keyword; a
    pin that is no RTC pin is refused. Kept until the next reset (machine_rtc_config)."""
    if pin is None:
        machine._ext0 = None
        return
    if pin.id not in _RTC_PINS:
        raise ValueError("invalid pin")
    machine._ext0 = (pin.id, 1 if level else 0)
