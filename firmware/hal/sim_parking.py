# Sim parking bay: cars arrive and leave (a two-state Markov chain per sample); a car's
# steel raises the field magnitude at the QMC5883L; the HC-SR04 sees its underside.
import math

from hal.sim_world import s16, NoDevice

# Earth's field at the bay, uT (Shanghai: ~48 uT total, inclined ~48 degrees).
EARTH_UT = (22.0, -4.0, 42.0)
_NORM = math.sqrt(sum(c * c for c in EARTH_UT))
# A car concentrates the field along it: modelled as a rise of the magnitude.
CAR_DIR = tuple(c / _NORM for c in EARTH_UT)
QUANTITIES = {}


def step(world, v, epoch_s):
    car = world.state.get("car", False)
    if world.rand.random() < (0.03 if car else 0.02):
        car = not car
    world.state["car"] = car
    v["mag_delta_ut"] = 38.0 if car else 0.0
    v["mag_drift_ut"] = 0.0
    v["distance_cm"] = 45.0 if car else 160.0


class QMC5883L(NoDevice):
    def __init__(self, world):
        self.world = world

    def writeto_mem(self, addr, reg, data):
        if addr != 0x0D:
            raise OSError(19)

    def readfrom_mem_into(self, addr, reg, buf):
        if addr != 0x0D:
            raise OSError(19)
        w = self.world
        if reg == 0x06:
            buf[0] = 0x01          # DRDY
            return
        delta = w.get("mag_delta_ut")
        drift = w.get("mag_drift_ut")
        for i in range(3):
            value = EARTH_UT[i] + CAR_DIR[i] * delta + w.gauss(0, 0.3)
            if i == 2:
                value += drift
            raw = s16(value * 120)    # 120 LSB per uT at the 2 G range
            buf[2 * i] = raw & 0xFF
            buf[2 * i + 1] = raw >> 8


class Ranger:
    def __init__(self, world):
        self.world = world

    def echo_us(self, timeout_us):
        return int(self.world.get("distance_cm") * 58)


def i2c(world):
    return QMC5883L(world)


def uart(world, name):
    return None
