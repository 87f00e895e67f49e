# The sim's synthetic street, shared by every kind: seeded noise, the quantities common to
# all nodes, stimuli that override any quantity, and the buses the drivers read it
# through. Each kind's own physics and sensor bytes live in hal/sim_<kind>.py, so a node
# loads only its own (every imported module costs heap). All of it is the sampling phase:
# loaded by HAL.sensors(), dropped with the rest of that phase by the node.
import random
import sys
import time


class Buses:
    """The sim HAL's sensors() (firmware/README.md, contract 2): the buses a board hands
    its drivers, here carrying the bytes the real parts would send for the world's values."""

    def __init__(self, hal):
        self.hal = hal
        name = "sim_" + hal.kind
        __import__("hal." + name)
        self.physics = getattr(sys.modules["hal"], name)
        self.world = World(self.physics.step, hal.seed, hal.rtc.setdefault("world", {}))

    def before_sample(self):
        hal = self.hal
        hal.poll()
        self.world.stimuli = hal.stimuli
        self.world.step(time.time())

    def battery_v(self):
        return self.world.get("battery_v", 3.6)

    def rssi(self):
        return self.world.values.get("rssi", -62) if self.hal.net_up else None

    def uart(self, name):
        return self.physics.uart(self.world, name)

    def i2c(self):
        return self.physics.i2c(self.world)

    def adc(self, name):
        from drivers.analog import calibration   # only kinds with ADC sensors load it
        return SimADC(self.world, self.physics.QUANTITIES[name],
                      calibration(name, self.hal.cfg["calibration"]))

    def pin(self, name):
        return SimPin(self.world, name)

    def ranger(self, name):
        return self.physics.Ranger(self.world)


def s16(value):
    value = int(round(value))
    value = max(-32768, min(32767, value))
    return value & 0xFFFF


class World:
    def __init__(self, step, seed, state):
        self._step = step         # the kind's step(world, values, epoch_s)
        self.rand = random
        random.seed(seed)
        self.state = state        # survives deep sleep in RTC memory
        self.stimuli = {}
        self.values = {}

    def gauss(self, mean, sd):
        # Sum of uniforms: MicroPython's random has no gauss().
        return mean + sd * (self.rand.random() + self.rand.random() + self.rand.random() - 1.5) * 2

    def step(self, epoch_s):
        v = {"battery_v": self.gauss(3.6, 0.01), "rssi": int(self.gauss(-62, 4))}
        self._step(self, v, epoch_s)
        for name in self.stimuli:
            v[name] = self.stimuli[name]
        self.values = v

    def get(self, name, default=0.0):
        return self.values.get(name, default)


class SimADC:
    """read_u16() of the counts the real sensor would give for the world's value."""

    def __init__(self, world, quantity, cal):
        from drivers.analog import counts_for   # kinds without ADC sensors never load it
        self.counts_for = counts_for
        self.world = world
        self.quantity = quantity
        self.cal = cal

    def read_u16(self):
        return self.counts_for(self.world.get(self.quantity), self.cal)


class SimPin:
    """A digital input that follows a world quantity. Pins are named for the part ("cover":
    the reed switch on the frame), quantities for what they sense ("cover_open")."""

    def __init__(self, world, name):
        self.world = world
        self.quantity = "cover_open" if name == "cover" else name

    def value(self):
        return 1 if self.world.get(self.quantity, False) else 0


class NoDevice:
    """An I2C bus with nothing on it: every transfer is NACKed, as on a board."""

    def writeto(self, addr, data):
        raise OSError(19)  # ENODEV

    def writeto_mem(self, addr, reg, data):
        raise OSError(19)

    def readfrom_into(self, addr, buf):
        raise OSError(19)

    def readfrom_mem_into(self, addr, reg, buf):
        raise OSError(19)
