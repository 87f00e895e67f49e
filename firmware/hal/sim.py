# The sim HAL: the node on the MicroPython unix port, its working folder playing the flash
# (firmware/README.md, contracts 2 and 3). Sensors are driven by a seeded synthetic world
# (cars arriving and leaving, a daily PM2.5 curve, occasional leaks, a cover lifted) or by
# stimuli from control.json; either way the HAL hands the drivers the bytes the real part
# would send, so parsing and detection run exactly as on a board.
import json
import math
import os
import random
import sys
import time

from drivers import analog
from drivers.sht3x import crc8

RTC_FILE = "rtc.json"
CONTROL_FILE = "control.json"
TAKEN_FILE = "taken.log"
SLEEP_EXIT = 75
REBOOT_EXIT = 76
# Earth's field at the bay, uT (Shanghai: ~48 uT total, inclined ~48 degrees).
EARTH_UT = (22.0, -4.0, 42.0)
_EARTH_NORM = math.sqrt(sum(c * c for c in EARTH_UT))
# A car's steel concentrates the field along it: modelled as a rise of the magnitude.
CAR_DIR = tuple(c / _EARTH_NORM for c in EARTH_UT)


def _s16(value):
    value = int(round(value))
    value = max(-32768, min(32767, value))
    return value & 0xFFFF


class World:
    """Seeded synthetic street; `stimuli` override any quantity until removed."""

    def __init__(self, kind, seed, state):
        self.kind = kind
        self.rand = random
        random.seed(seed)
        self.state = state        # survives deep sleep in RTC memory
        self.stimuli = {}
        self.values = {}

    def gauss(self, mean, sd):
        # Sum of uniforms: MicroPython's random has no gauss().
        return mean + sd * (self.rand.random() + self.rand.random() + self.rand.random() - 1.5) * 2

    def step(self, epoch_s):
        st = self.state
        v = {"battery_v": self.gauss(3.6, 0.01), "rssi": int(self.gauss(-62, 4))}
        kind = self.kind
        if kind == "parking":
            car = st.get("car", False)
            if self.rand.random() < (0.03 if car else 0.02):
                car = not car
            st["car"] = car
            v["mag_delta_ut"] = 38.0 if car else 0.0
            v["mag_drift_ut"] = 0.0
            v["distance_cm"] = 45.0 if car else 160.0
        elif kind == "air":
            hour = (epoch_s % 86400) / 3600.0
            pm25 = 35 + 25 * math.sin(2 * math.pi * (hour - 8) / 24) + self.gauss(0, 3)
            v["pm25"] = max(1.0, pm25)
            v["pm1"] = v["pm25"] * 0.6
            v["pm10"] = v["pm25"] * 1.6
            v["co2"] = self.gauss(430, 15)
            v["no2"] = max(0.0, self.gauss(22, 4))
            v["temperature_c"] = 18 + 6 * math.sin(2 * math.pi * (hour - 9) / 24)
            v["humidity_pct"] = 65 + self.gauss(0, 2)
        elif kind == "leak":
            left = st.get("leak", 0)
            if left == 0 and self.rand.random() < 0.002:
                left = 20
            st["leak"] = max(0, left - 1)
            v["conductance"] = self.gauss(2600, 80) if left else self.gauss(150, 15)
        else:
            left = st.get("lift", 0)
            if left == 0 and self.rand.random() < 0.002:
                left = 5
            st["lift"] = max(0, left - 1)
            v["tilt_deg"] = 40.0 if left else abs(self.gauss(0, 0.4))
            v["cover_open"] = bool(left)
            v["ch4_lel"] = max(0.0, self.gauss(0.5, 0.2))
            v["h2s_ppm"] = max(0.0, self.gauss(0.3, 0.1))
            v["water_level_cm"] = max(0.0, self.gauss(30, 1))
        for name in self.stimuli:
            v[name] = self.stimuli[name]
        if "wet" in self.stimuli and "conductance" not in self.stimuli:
            v["conductance"] = self.gauss(2600, 80) if self.stimuli["wet"] else self.gauss(150, 15)
        self.values = v

    def get(self, name, default=0.0):
        return self.values.get(name, default)


class SimUART:
    """The UART of a PMS5003 (streams frames) or an MH-Z19 (answers a read command)."""

    def __init__(self, world, name):
        self.world = world
        self.name = name
        self.pending = b""

    def write(self, data):
        if self.name == "co2" and data[:3] == b"\xff\x01\x86":
            ppm = int(self.world.get("co2"))
            frame = bytearray(b"\xff\x86\x00\x00\x00\x00\x00\x00\x00")
            frame[2] = ppm >> 8
            frame[3] = ppm & 0xFF
            frame[8] = (0xFF - (sum(frame[1:8]) & 0xFF) + 1) & 0xFF
            self.pending = bytes(frame)
        return len(data)

    def read(self, n=None):
        if self.name == "pm":
            w = self.world
            words = [int(w.get("pm1")), int(w.get("pm25")), int(w.get("pm10"))] * 2 + [0] * 7
            frame = bytearray(32)
            frame[0:4] = b"\x42\x4d\x00\x1c"
            for i, word in enumerate(words):
                frame[4 + 2 * i] = (word >> 8) & 0xFF
                frame[5 + 2 * i] = word & 0xFF
            total = sum(frame[:30])
            frame[30] = total >> 8 & 0xFF
            frame[31] = total & 0xFF
            # Start mid-frame, as a real read of a streaming sensor does.
            return bytes(frame[20:]) + bytes(frame)
        out, self.pending = self.pending, b""
        return out or None


class SimI2C:
    """QMC5883L (0x0D), SHT3x (0x44) and MPU-6050 (0x68) register maps."""

    def __init__(self, world):
        self.world = world

    def writeto(self, addr, data):
        if addr != 0x44:
            raise OSError(19)  # ENODEV: nothing answers at this address (a NACK)

    def writeto_mem(self, addr, reg, data):
        if addr not in (0x0D, 0x68):
            raise OSError(19)

    def readfrom_into(self, addr, buf):
        if addr != 0x44:
            raise OSError(19)
        w = self.world
        t = int((w.get("temperature_c") + 45) * 65535 / 175)
        rh = int(w.get("humidity_pct") * 65535 / 100)
        raw = bytes((t >> 8, t & 0xFF))
        buf[0:2] = raw
        buf[2] = crc8(raw)
        raw = bytes((rh >> 8, rh & 0xFF))
        buf[3:5] = raw
        buf[5] = crc8(raw)

    def readfrom_mem_into(self, addr, reg, buf):
        w = self.world
        if addr == 0x0D:
            if reg == 0x06:
                buf[0] = 0x01          # DRDY
                return
            delta = w.get("mag_delta_ut")
            drift = w.get("mag_drift_ut")
            vec = (EARTH_UT[0] + CAR_DIR[0] * delta + w.gauss(0, 0.3),
                   EARTH_UT[1] + CAR_DIR[1] * delta + w.gauss(0, 0.3),
                   EARTH_UT[2] + drift + CAR_DIR[2] * delta + w.gauss(0, 0.3))
            for i in range(3):
                raw = _s16(vec[i] * 120)
                buf[2 * i] = raw & 0xFF
                buf[2 * i + 1] = raw >> 8
        elif addr == 0x68:
            angle = math.radians(w.get("tilt_deg"))
            vec = (0.0, math.sin(angle), math.cos(angle))
            for i in range(3):
                raw = _s16(vec[i] * 16384)
                buf[2 * i] = raw >> 8
                buf[2 * i + 1] = raw & 0xFF
        else:
            raise OSError(19)


class SimADC:
    def __init__(self, world, name, cal):
        self.world = world
        self.name = name
        self.cal = cal

    def read_u16(self):
        quantity = {"ch4": "ch4_lel", "h2s": "h2s_ppm", "no2": "no2", "level": "water_level_cm",
                    "leak": "conductance"}[self.name]
        return analog.counts_for(self.world.get(quantity), self.cal)


class SimPin:
    def __init__(self, world, name):
        self.world = world
        self.name = name

    def value(self):
        return 1 if self.world.get(self.name, False) else 0


class SimRanger:
    def __init__(self, world):
        self.world = world

    def echo_us(self, timeout_us):
        return int(self.world.get("distance_cm") * 58)


class HAL:
    name = "sim"

    def __init__(self, cfg):
        self.cfg = cfg
        self.kind = cfg["kind"]
        self._control_id = None
        self.net_up = True
        self._offset = 0
        rtc = self._read_json(RTC_FILE)
        if rtc is None:
            self.cause = "power"
        elif rtc.get("sleep_ms") is not None:
            self.cause = "deepsleep"
        elif rtc.get("soft"):
            self.cause = "soft"
        else:
            self.cause = "hard"
        self.rtc = (rtc or {}).get("mem") or {}
        # The RTC keeps running (and keeps its NTP time) through deep sleep and resets,
        # not through a power cut.
        self.synced = bool(self.rtc.get("synced")) and self.cause != "power"
        self.wake = os.getenv("URBANSENSE_WAKE") or ("timer" if self.cause == "deepsleep" else None)
        # From now on a kill is a hard reset: RTC memory stays, but the node did not sleep.
        self._write_json(RTC_FILE, {"mem": self.rtc})
        seed = cfg.get("seed")
        if seed is None:
            seed = sum(cfg["node"].encode()) * 7919
        seed += self.rtc.get("wakes", 0)
        self.world = World(self.kind, seed, self.rtc.setdefault("world", {}))
        self._stdin_poll = None
        if cfg.get("hil"):
            import select
            self._stdin_poll = select.poll()
            self._stdin_poll.register(sys.stdin, select.POLLIN)
        self.poll()

    # -- files
    def _read_json(self, path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_json(self, path, obj):
        with open(path + ".tmp", "w") as f:
            json.dump(obj, f)
        os.rename(path + ".tmp", path)

    # -- reset, RTC memory, sleep
    def reset_cause(self):
        return self.cause

    def wake_reason(self):
        return self.wake

    def rtc_load(self):
        return self.rtc

    def rtc_save(self, mem):
        self.rtc.update(mem)

    def deepsleep(self, ms):
        self.rtc["wakes"] = self.rtc.get("wakes", 0) + 1
        self._write_json(RTC_FILE, {"mem": self.rtc, "sleep_ms": ms})
        print("%s deepsleep %d" % (self.cfg["node"], ms))
        sys.exit(SLEEP_EXIT)

    def reset(self):
        self._write_json(RTC_FILE, {"mem": self.rtc, "soft": True})
        sys.exit(REBOOT_EXIT)

    def fatal(self, err):
        sys.print_exception(err)
        sys.exit(1)

    # No watchdog on a PC: a hung sim node is seen by its supervisor instead.
    def wdt_start(self, ms):
        pass

    def wdt_feed(self):
        pass

    # -- time
    def local_ms(self):
        return time.time_ns() // 1000000

    def epoch_ms(self):
        return self.local_ms() if self.synced else None

    def sync_time(self):
        # "NTP" works while the network is up; the PC's clock is already right.
        if self.link_up():
            self.synced = self.rtc["synced"] = True
        return self.synced

    # -- network
    def connect_network(self, timeout_ms=10000):
        return self.link_up()

    def link_up(self):
        self.poll()
        return self.net_up

    def rssi(self):
        return self.world.values.get("rssi", -62) if self.net_up else None

    def battery_v(self):
        return self.world.get("battery_v", 3.6)

    def ssl_context(self, ca):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if ca:
            ctx.load_verify_locations(cafile=ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # -- stimuli and faults
    def poll(self):
        """Re-read control.json when it changed (inode or mtime: it is replaced by rename)
        and, in HIL mode, answer stimulus lines on the console."""
        try:
            st = os.stat(CONTROL_FILE)
            ident = (st[1], st[8], st[6])
        except OSError:
            ident = None
        if ident != self._control_id:
            self._control_id = ident
            ctl = self._read_json(CONTROL_FILE) if ident else {}
            if ctl is not None:
                self.world.stimuli = ctl.get("stimuli") or {}
                self.net_up = ctl.get("net", "up") != "down"
        if self._stdin_poll is not None:
            while self._stdin_poll.poll(0):
                line = sys.stdin.readline()
                if not line:
                    self._stdin_poll = None   # console closed
                    break
                print(self.console_command(line.strip()))

    def console_command(self, line):
        if line.startswith("!net "):
            self.net_up = line[5:].strip() != "down"
            return "!ok"
        if line.startswith("!stim "):
            try:
                changes = json.loads(line[6:])
            except ValueError:
                return "!err stimulus is not JSON"
            for name in changes:
                if changes[name] is None:
                    self.world.stimuli.pop(name, None)
                else:
                    self.world.stimuli[name] = changes[name]
            return "!ok"
        return "!err unknown console command"

    def note_taken(self, boot, seq):
        # The harness's ground truth: every reading or event the node created.
        with open(TAKEN_FILE, "a") as f:
            f.write("%d %d\n" % (boot, seq))

    # -- buses
    def before_sample(self):
        self.poll()
        self.world.step(time.time())

    def uart(self, name):
        return SimUART(self.world, name)

    def i2c(self):
        return SimI2C(self.world)

    def adc(self, name):
        return SimADC(self.world, name, analog.calibration(name, self.cfg["calibration"]))

    def pin(self, name):
        return SimPin(self.world, name)

    def ranger(self, name):
        return SimRanger(self.world)
