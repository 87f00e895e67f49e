# Stand-in time: the unix port's own ticks and sleeps, and the chip's calendar clock.
# - ESP32: the clock counts from 2000-01-01 at power-on and runs through deep sleep and
#   every reset but power-on (ESP-IDF "System Time": the RTC timer); the port's epoch is
#   2000 (ports/esp32/mpconfigport.h sets no MICROPY_EPOCH_IS_1970; py/mpconfig.h defaults
#   to 2000).
# - rp2: ports/rp2/main.c sets the RTC to 2021-01-01 00:00:00 at every boot (a
#   machine.reset() or the HAL's emulated deep sleep included), and the epoch is 1970
#   (ports/rp2/mpconfigport.h, MICROPY_EPOCH_IS_1970).
import sys

_path = sys.path[:]
sys.path.clear()
try:
    import time as _real    # the unix port's built-in time (an extensible module)
    # The ticks and sleeps are the unix port's: re-exported as they are.
    from time import sleep, sleep_ms, sleep_us, ticks_ms, ticks_us, ticks_cpu, ticks_add, ticks_diff  # noqa: F401
finally:
    sys.path.extend(_path)

_EPOCH_2000 = 946684800     # 2000-01-01 in Unix seconds
_RP2_BOOT = 1609459200      # 2021-01-01 in Unix seconds


def real_ns():
    """The PC's clock: true time on the bench."""
    return _real.time_ns()


def _shift():
    import bench
    return _EPOCH_2000 if bench.CHIP == "esp32" else 0


def time_ns():
    import bench
    since = real_ns() - bench.state["power_ns" if bench.CHIP == "esp32" else "boot_ns"]
    return since if bench.CHIP == "esp32" else _RP2_BOOT * 1000000000 + since


def time():
    return time_ns() // 1000000000


def gmtime(secs=None):
    return _real.gmtime((time() if secs is None else secs) + _shift())[:8]


localtime = gmtime


def mktime(t):
    return _real.mktime(t) - _shift()
