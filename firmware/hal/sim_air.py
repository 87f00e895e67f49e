# Sim air-quality site: a daily PM2.5 curve (morning and evening traffic), CO2, NO2,
# temperature and humidity, turned into PMS5003 frames, MH-Z19 answers, SHT3x words.
import math

from drivers.sht3x import crc8
from hal.sim_world import NoDevice

QUANTITIES = {"no2": "no2"}


def step(world, v, epoch_s):
    hour = (epoch_s % 86400) / 3600.0
    pm25 = 35 + 25 * math.sin(2 * math.pi * (hour - 8) / 24) + world.gauss(0, 3)
    v["pm25"] = max(1.0, pm25)
    v["pm1"] = v["pm25"] * 0.6
    v["pm10"] = v["pm25"] * 1.6
    v["co2"] = world.gauss(430, 15)
    v["no2"] = max(0.0, world.gauss(22, 4))
    v["temperature_c"] = 18 + 6 * math.sin(2 * math.pi * (hour - 9) / 24)
    v["humidity_pct"] = 65 + world.gauss(0, 2)


class UART:
    """A PMS5003 (streams frames) or an MH-Z19 (answers a read command)."""

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
        if self.name != "pm":
            out, self.pending = self.pending, b""
            return out or None
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


class SHT3x(NoDevice):
    def __init__(self, world):
        self.world = world

    def writeto(self, addr, data):
        if addr != 0x44:
            raise OSError(19)

    def readfrom_into(self, addr, buf):
        if addr != 0x44:
            raise OSError(19)
        w = self.world
        t = int((w.get("temperature_c") + 45) * 65535 / 175)
        rh = int(w.get("humidity_pct") * 65535 / 100)
        for pos, raw in ((0, t), (3, rh)):
            word = bytes((raw >> 8, raw & 0xFF))
            buf[pos:pos + 2] = word
            buf[pos + 2] = crc8(word)


def i2c(world):
    return SHT3x(world)


def uart(world, name):
    return UART(world, name)
