# The bench around a stand-in chip (the MicroPython unix port playing an ESP32 or a Pico W
# for the board HALs): which chip it is, what is wired to its pins, and what the chip
# keeps through a reset. The stand-in machine, esp32, network, ntptime, socket and time
# modules read it; each behaviour they model names the MicroPython source it follows.
#
# Files in the working folder (the board's flash):
#   bench.json   written by the test: {"chip": "esp32"|"rp2", "pins": {gpio: 0|1|null},
#                "pullup": [gpio...] (pull-ups on the board), "adc": {gpio: volts},
#                "uart": {rx gpio: part}, "i2c": {address: part}, "echo": {gpio: cm},
#                "wifi": {"ssid": ..., "up": bool}, "ntp": bool}; re-read when it changes.
#   chip.json    the chip's own state across resets (the RTC domain): lost on a power
#                cut, which the harness makes by deleting it.
#   chip.log     what the chip did that a test checks (sleeps, radio, pulls), one line each.
# The process ends with RESET_EXIT at every reset the chip makes; its supervisor starts
# it again at once (a deep sleep is slept inside the process, as the chip sleeps).
import json
import os
import sys

BENCH_FILE = "bench.json"
CHIP_FILE = "chip.json"
LOG_FILE = "chip.log"
WDT_RESET_FILE = "wdt.reset"   # left by the supervisor when the watchdog reset the chip
RESET_EXIT = 76

_bench = {}
_bench_id = None
# rp2: the CYW43 is powered from the first WLAN.active(True) or connect() until
# WLAN.deinit() (extmod/network_cyw43.c); every reset powers it down.
radio = False


def _real_time():
    import time
    return time.real_ns()


def _write(path, obj):
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(obj))
    os.rename(path + ".tmp", path)


def _read(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def get():
    """bench.json, re-read when it changed (the test rewrites it by rename)."""
    global _bench, _bench_id
    try:
        st = os.stat(BENCH_FILE)
        ident = (st[1], st[8], st[6])
    except OSError:
        ident = None
    if ident != _bench_id:
        got = _read(BENCH_FILE)
        if got is not None:
            _bench, _bench_id = got, ident
    return _bench


CHIP = get().get("chip", "esp32")


def log(line):
    with open(LOG_FILE, "a") as f:
        f.write(line + "\n")


def _boot():
    """What the chip knows as it starts: why it reset (the reason the last process left,
    or a watchdog reset if it ended without one), and its state kept through resets."""
    now = _real_time()
    state = _read(CHIP_FILE)
    if state is None:
        state = {"power_ns": now}
        why = "power"
    else:
        why = state.pop("next", None) or "wdt"
    try:
        os.remove(WDT_RESET_FILE)
        why = "wdt"
    except OSError:
        pass
    state["why"] = why
    state["wake"] = state.pop("next_wake", None)
    state["boot_ns"] = now
    _write(CHIP_FILE, state)
    log("boot %s" % why)
    return state


state = _boot()


def save():
    _write(CHIP_FILE, state)


def reset(why, wake=None):
    """The chip resets: `why` is what the next boot's reset cause will say."""
    state["next"] = why
    state["next_wake"] = wake
    save()
    sys.exit(RESET_EXIT)
