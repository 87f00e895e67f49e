# Sim manhole: a seated cover rocking a little under traffic, now and then lifted; gas
# and water levels; the MPU-6050 sees the cover's tilt as a rotated gravity vector.
import math

from hal.sim_world import s16, NoDevice

QUANTITIES = {"ch4": "ch4_lel", "h2s": "h2s_ppm", "level": "water_level_cm"}


def step(world, v, epoch_s):
    left = world.state.get("lift", 0)
    if left == 0 and world.rand.random() < 0.002:
        left = 5
    world.state["lift"] = max(0, left - 1)
    v["tilt_deg"] = 40.0 if left else abs(world.gauss(0, 0.4))
    v["cover_open"] = bool(left)
    v["ch4_lel"] = max(0.0, world.gauss(0.5, 0.2))
    v["h2s_ppm"] = max(0.0, world.gauss(0.3, 0.1))
    v["water_level_cm"] = max(0.0, world.gauss(30, 1))


class MPU6050(NoDevice):
    def __init__(self, world):
        self.world = world

    def writeto_mem(self, addr, reg, data):
        if addr != 0x68:
            raise OSError(19)

    def readfrom_mem_into(self, addr, reg, buf):
        if addr != 0x68:
            raise OSError(19)
        angle = math.radians(self.world.get("tilt_deg"))
        vec = (0.0, math.sin(angle), math.cos(angle))
        for i in range(3):
            raw = s16(vec[i] * 16384)     # 16384 LSB per g at +-2 g
            buf[2 * i] = raw >> 8
            buf[2 * i + 1] = raw & 0xFF


def i2c(world):
    return MPU6050(world)


def uart(world, name):
    return None
