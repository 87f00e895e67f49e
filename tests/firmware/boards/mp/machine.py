# Stand-in machine for the board HALs under the unix port, as an ESP32 or a Pico W
# (bench.CHIP). It models what the HALs rely on, each behaviour from the MicroPython
# source or document named beside it; the sensors' bytes come from parts.py, the wiring
# from bench.json.
import time

import bench
import parts

ESP32 = bench.CHIP == "esp32"
_BYTE_NS = 10 * 1000000000 // 9600    # a byte at 9600 8N1: start + 8 data + stop bits

# -- reset causes and wake reasons
if ESP32:
    # ports/esp32/modmachine.c: reset_reason_t, and mp_machine_reset_cause(): ESP_RST_SW
    # (machine.reset()) and ESP_RST_PANIC (a crash) give HARD_RESET; the watchdogs
    # WDT_RESET; SOFT_RESET only after a soft reset of the REPL (Ctrl-D), never here.
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    _CAUSES = {"power": PWRON_RESET, "sw": HARD_RESET, "wdt": WDT_RESET,
               "deepsleep": DEEPSLEEP_RESET}
    # machine.wake_reason() is esp_sleep_get_wakeup_cause(): ESP_SLEEP_WAKEUP_EXT0 = 2,
    # EXT1 = 3, TIMER = 4 (ESP-IDF esp_sleep.h), 0 when no sleep ended.
    PIN_WAKE = EXT0_WAKE = 2
    EXT1_WAKE = 3
    TIMER_WAKE = 4
else:
    # ports/rp2/modmachine.c: RP2_RESET_PWRON 1 and RP2_RESET_WDT 3 are all it has;
    # watchdog_caused_reboot() is true after machine.reset() too (a watchdog_reboot).
    PWRON_RESET = 1
    WDT_RESET = 3
    _CAUSES = {"power": PWRON_RESET}


def reset_cause():
    return _CAUSES.get(bench.state["why"], WDT_RESET)


def wake_reason():
    if bench.state["why"] != "deepsleep":
        return 0
    return {"ext0": EXT0_WAKE, "timer": TIMER_WAKE}.get(bench.state["wake"], 0)


def reset():
    bench.reset("sw")


# -- pins
# ESP32: GPIO 0-39 bar 20, 24 and 28-31; 34-39 are inputs only (ports/esp32/machine_pin.c,
# "pin can only be input"). RTC pins keep their pull in deep sleep, bar 34-39
# (docs/esp32/quickref.rst, "Deep-sleep mode"). rp2: GPIO 0-29.
_ESP32_GPIO = [n for n in range(40) if n not in (20, 24, 28, 29, 30, 31)]
_RTC_PULL_KEPT = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33)
_pulls = {}      # gpio -> the pull set this boot (Pin() without pull keeps it)
_outputs = {}    # gpio -> level driven
_irqs = {}       # gpio -> (trigger, handler)


def level(gpio):
    """What a pin reads: the level the bench drives on it, else its pull (a pull-up on the
    board or the chip's own), else 0."""
    b = bench.get()
    driven = b.get("pins", {}).get(str(gpio))
    if driven is not None:
        return driven
    if gpio in _outputs:
        return _outputs[gpio]
    if gpio in b.get("pullup", ()) or _pulls.get(gpio) == Pin.PULL_UP:
        return 1
    return 0


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1 if ESP32 else 8    # ESP32 GPIO_INTR_POSEDGE; rp2 GPIO_IRQ_EDGE_RISE
    IRQ_FALLING = 2 if ESP32 else 4   # ESP32 GPIO_INTR_NEGEDGE; rp2 GPIO_IRQ_EDGE_FALL

    def __init__(self, id, mode=-1, pull=-1, value=None, hold=None):
        if (id not in _ESP32_GPIO) if ESP32 else not 0 <= id <= 29:
            raise ValueError("invalid pin")
        self.id = id
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None, hold=None):
        if ESP32 and self.id >= 34 and mode == Pin.OUT:
            raise ValueError("pin can only be input")
        # ports/esp32/machine_pin.c: the pull is changed only when given (None: off).
        if pull != -1:
            _pulls[self.id] = pull or 0
        if mode == Pin.OUT:
            _outputs[self.id] = value or 0
        elif mode != -1:
            _outputs.pop(self.id, None)

    def value(self, v=None):
        if v is None:
            return level(self.id)
        _outputs[self.id] = 1 if v else 0

    def irq(self, handler=None, trigger=None):
        _irqs[self.id] = (trigger or Pin.IRQ_RISING | Pin.IRQ_FALLING, handler)


def time_pulse_us(pin, pulse_level, timeout_us):
    # The HC-SR04's echo width for the distance on the bench; -1 on timeout
    # (extmod/machine_pulse.c).
    cm = bench.get().get("echo", {}).get(str(pin.id))
    return -1 if cm is None or cm * 58 > timeout_us else int(cm * 58)


# -- ADC
class ADC:
    if ESP32:
        ATTN_0DB = 0
        ATTN_2_5DB = 1
        ATTN_6DB = 2
        ATTN_11DB = 3
        # Linear ranges per attenuation (docs/esp32/quickref.rst, "ADC"): read_uv() is
        # calibrated inside them; below reads the bottom, above saturates.
        _RANGE = ((0.1, 0.95), (0.1, 1.25), (0.15, 1.75), (0.15, 2.45))

    def __init__(self, pin, *, atten=None):
        gpio = pin.id if isinstance(pin, Pin) else pin
        if ESP32:
            # ADC block 1 on GPIO 32-39, block 2 on 0, 2, 4, 12-15, 25-27 (quickref).
            if gpio not in (0, 2, 4, 12, 13, 14, 15, 25, 26, 27) and not 32 <= gpio <= 39:
                raise ValueError("invalid pin")
            # ports/esp32/machine_adc.c: without atten= a channel is at 0 dB.
            self.atten = atten or 0
        elif not 26 <= gpio <= 29:
            raise ValueError("Pin doesn't have ADC capabilities")   # ports/rp2/machine_adc.c
        self.gpio = gpio

    def _volts(self):
        if not ESP32 and self.gpio == 29 and bench.radio:
            # GPIO29 is the CYW43's SPI clock on a Pico W: ADC(Pin(29)) with the radio on
            # takes the pin from the driver and reads ~0.03 V (micropython issue 10406;
            # pico-sdk boards/pico_w.h, CYW43_USES_VSYS_PIN).
            bench.log("adc gpio29 with the radio on")
            return 0.03
        return bench.get().get("adc", {}).get(str(self.gpio), 0.0)

    def read_u16(self):
        full = self._RANGE[self.atten][1] if ESP32 else 3.3
        return max(0, min(65535, int(self._volts() / full * 65535)))

    if ESP32:
        def read_uv(self):
            # Calibrated from eFuse values, millivolt resolution (quickref, read_uv).
            low, high = self._RANGE[self.atten]
            return int(max(low, min(high, self._volts())) * 1000) * 1000


# -- UART
class UART:
    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None,
                 timeout=0, timeout_char=0, rxbuf=256, txbuf=256):
        if ESP32:
            # ports/esp32/machine_uart.c: UART 0-2 (SOC_UART_NUM); any pins; UART0 is the
            # REPL; default pins UART1 tx 10 rx 9, UART2 tx 17 rx 16 (quickref).
            if not 0 <= id <= 2:
                raise ValueError("UART(%d) does not exist" % id)
            tx = tx if tx is not None else (1, 10, 17)[id]
            rx = rx if rx is not None else (3, 9, 16)[id]
        else:
            # ports/rp2/machine_uart.c: UART0 and UART1 only; a TX pin is one with
            # (pin & 3) == 0, an RX pin (pin & 3) == 1, and ((pin + 4) & 8) >> 3 names the
            # UART it belongs to (IS_VALID_TX, IS_VALID_RX).
            if not 0 <= id <= 1:
                raise ValueError("UART(%d) doesn't exist" % id)
            tx = tx if tx is not None else (0, 4)[id]
            rx = rx if rx is not None else (1, 5)[id]
            if tx & 3 != 0 or ((tx + 4) & 8) >> 3 != id:
                raise ValueError("bad TX pin")
            if rx & 3 != 1 or ((rx + 4) & 8) >> 3 != id:
                raise ValueError("bad RX pin")
            # "Make sure timeout_char is at least as long as a whole character."
            timeout_char = max(timeout_char, 13000 // baudrate + 1)
        self.tx, self.rx = tx, rx
        self.timeout, self.timeout_char, self.rxbuf = timeout, timeout_char, rxbuf
        self.part = bench.get().get("uart", {}).get(str(rx))
        # Opening a UART empties its receive buffer: rp2 allocates a new ring buffer,
        # ESP32 calls uart_flush_input() (both machine_uart.c).
        self._buf = b""
        self._fed = self.opened_ns = time.real_ns()
        self._answer = None     # (when, bytes) of a command part's answer
        self.frames_sent = 0    # frames whose last byte came while the UART was open

    def _feed(self):
        """Bytes that came since the last look, into the receive buffer; once it holds
        rxbuf bytes, later ones are lost (rp2: ringbuf_put fails; ESP32: the driver's
        buffer is full)."""
        now = time.real_ns()
        since, self._fed = self._fed, now
        part = self.part
        if part is None:
            return
        if part.get("period_ms"):
            period = part["period_ms"] * 1000000
            t0 = bench.state["boot_ns"] + part.get("phase_ms", 0) * 1000000
            first = max(0, (since - t0) // period - 1)
            last = (now - t0) // period
            limit = part.get("frames")
            for k in range(first, last + 1):
                if limit is not None and k >= limit:
                    break
                self._take(part, parts.frame(part, k), t0 + k * period, since, now)
        if self._answer is not None:
            when, data = self._answer
            self._take(part, data, when, since, now)

    def _take(self, part, data, start, since, now):
        for i in range(len(data)):
            at = start + (i + 1) * _BYTE_NS
            if since < at <= now and len(self._buf) < self.rxbuf:
                self._buf += data[i:i + 1]
                if i == len(data) - 1:
                    self.frames_sent += 1

    def any(self):
        self._feed()
        return len(self._buf)

    def _wait_byte(self, ms):
        deadline = time.ticks_add(time.ticks_ms(), ms)
        while True:
            self._feed()
            if self._buf:
                return True
            if time.ticks_diff(deadline, time.ticks_ms()) < 0:
                return False
            time.sleep_ms(1)

    def _read_some(self, n):
        """One read of the port's stream protocol (returns b"" where the port's read()
        gives EAGAIN). rp2: wait `timeout` for the first byte, then `timeout_char` for each
        next one (ports/rp2/machine_uart.c). ESP32: `timeout` for the first byte, then
        `timeout_char` for all the rest (ports/esp32/machine_uart.c, uart_read_bytes)."""
        if not self._wait_byte(self.timeout):
            return b""
        out, self._buf = self._buf[:1], self._buf[1:]
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_char)
        while len(out) < n:
            if not ESP32:
                if not self._wait_byte(self.timeout_char):
                    break
            else:
                self._feed()
                if not self._buf:
                    if time.ticks_diff(deadline, time.ticks_ms()) < 0:
                        break
                    time.sleep_ms(1)
                    continue
            take = n - len(out)
            out, self._buf = out + self._buf[:take], self._buf[take:]
        return out

    def read(self, n=None):
        if n is not None:
            return self._read_some(n) or None
        # No size: py/stream.c (stream_readall) reads until one read times out empty, so
        # a sensor that never pauses for a whole `timeout` keeps it reading for ever.
        out = b""
        while True:
            chunk = self._read_some(256)
            if not chunk:
                return out or None
            out += chunk

    def write(self, data):
        part = self.part
        if part is not None and part.get("tx") == self.tx:
            data = bytes(data)
            reply = parts.answer(part, data)
            if reply is not None:
                # It answers once the command is in (9 bytes at 9600 baud).
                self._answer = (time.real_ns() + len(data) * _BYTE_NS, reply)
        return len(data)


# -- I2C
class I2C:
    def __init__(self, id, *, scl=None, sda=None, freq=400000, timeout=50000):
        if not 0 <= id <= 1:
            raise ValueError("I2C(%d) doesn't exist" % id)
        if not ESP32:
            # ports/rp2/machine_i2c.c: SCL on odd pins, SDA on even ones, and bit 1 of the
            # pin number names the I2C block (IS_VALID_SCL, IS_VALID_SDA).
            if scl is not None and (scl.id & 1 != 1 or (scl.id & 2) >> 1 != id):
                raise ValueError("bad SCL pin")
            if sda is not None and (sda.id & 1 != 0 or (sda.id & 2) >> 1 != id):
                raise ValueError("bad SDA pin")

    def _part(self, addr):
        part = bench.get().get("i2c", {}).get("%d" % addr)
        if part is None:
            raise OSError(19)   # no ACK: ENODEV (extmod/machine_i2c.c)
        return part

    def writeto(self, addr, buf, stop=True):
        self._part(addr)
        return 1

    def writeto_mem(self, addr, reg, buf):
        self._part(addr)

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = parts.read(self._part(addr), None, len(buf))

    def readfrom_mem_into(self, addr, reg, buf):
        buf[:] = parts.read(self._part(addr), reg, len(buf))

    def scan(self):
        return sorted(int(a) for a in bench.get().get("i2c", {}))


# -- watchdog
class WDT:
    def __init__(self, id=0, timeout=5000):
        if not ESP32 and timeout > 8388:
            # ports/rp2/machine_wdt.c: the RP2040's counter tops out at 8388 ms.
            raise ValueError("timeout exceeds maximum")
        self.timeout = timeout
        self._fed = None
        self.feed()

    def feed(self):
        # The supervisor keeps the watchdog (hil/sim.py): a `wdt` file holding the timeout,
        # rewritten at least every quarter second while fed; one older than the timeout
        # and the chip is reset, as a board's watchdog resets it.
        now = time.ticks_ms()
        if self._fed is None or time.ticks_diff(now, self._fed) >= 250:
            with open("wdt", "w") as f:
                f.write("%d" % self.timeout)
            self._fed = now


# -- RTC memory (ESP32): ports/esp32/machine_rtc.c keeps up to 2 KB
# (MICROPY_HW_RTC_USER_MEM_MAX) in RTC slow memory: through deep sleep and every reset
# but a power-on, when it is gone.
class RTC:
    def memory(self, data=None):
        if data is None:
            return bench.state.get("rtc_mem", "").encode()
        if len(data) > 2048:
            raise ValueError("buffer too long")
        bench.state["rtc_mem"] = data if isinstance(data, str) else data.decode()
        bench.save()


# -- sleep
_ext0 = None    # (gpio, level) set by esp32.wake_on_ext0 (machine_rtc_config in the port)


def deepsleep(ms=None):
    if not ESP32:
        lightsleep(ms)      # ports/rp2/modmachine.c: mp_machine_deepsleep is lightsleep + reset
        reset()
    # ports/esp32/modmachine.c (machine_sleep_helper): a timer wake if ms is given, and
    # ext0 on the pin and level esp32.wake_on_ext0 set. ext0 is level-triggered (ESP-IDF
    # esp_sleep_enable_ext0_wakeup): if the pin is at that level the sleep ends at once.
    try:
        import os
        os.remove("wdt")    # the chip is off: no watchdog runs in deep sleep
    except OSError:
        pass
    for gpio in _RTC_PULL_KEPT:
        if _pulls.get(gpio) == Pin.PULL_UP and bench.get().get("pins", {}).get(str(gpio)) == 0:
            # The pull-up stays on and conducts through the closed switch all the sleep
            # (docs/esp32/quickref.rst, "Deep-sleep mode").
            bench.log("deepsleep pull-up conducting on GPIO%d" % gpio)
    start = time.ticks_ms()
    while True:
        if _ext0 is not None and level(_ext0[0]) == _ext0[1]:
            wake = "ext0"
            break
        if ms is not None and time.ticks_diff(time.ticks_ms(), start) >= ms:
            wake = "timer"
            break
        time.sleep_ms(10)
    bench.log("deepsleep %s woke %s after %d" % (ms, wake, time.ticks_diff(time.ticks_ms(), start)))
    bench.reset("deepsleep", wake)


def lightsleep(ms=None):
    start = time.ticks_ms()
    if ESP32 or ms is not None and ms <= 1:
        time.sleep_ms(ms or 0)   # rp2: "Sleep is too small, just use standard delay."
        return
    # ports/rp2/modmachine.c (mp_machine_lightsleep): with a Wi-Fi poll pending it returns
    # at once, and any interrupt (the CYW43's host wake, a GPIO) ends the WFI: with the
    # radio on, a sleep lasts about one beacon interval (~100 ms) at most.
    cap = 100 if bench.radio else ms
    levels = {gpio: level(gpio) for gpio in _irqs}
    why = "time"
    while time.ticks_diff(time.ticks_ms(), start) < cap:
        for gpio in _irqs:
            trigger, handler = _irqs[gpio]
            now = level(gpio)
            if now != levels[gpio] and trigger & (Pin.IRQ_RISING if now else Pin.IRQ_FALLING):
                why = "irq"
                if handler is not None:
                    handler(Pin(gpio))
            levels[gpio] = now
        if why == "irq":
            break
        time.sleep_ms(10)
    bench.log("lightsleep %d slept %d radio=%s end=%s" % (
        ms, time.ticks_diff(time.ticks_ms(), start), "on" if bench.radio else "off", why))


def unique_id():
    return b"\x00\x01\x02\x03\x04\x05"


def freq(hz=None):
    return 240000000 if ESP32 else 125000000


def idle():
    time.sleep_ms(1)
