# Sim leak probe: mostly dry, now and then a leak that lasts a while; `wet` as a stimulus
# sets the probe's conductance to that of tap water (or of a dry probe).
from hal.sim_world import NoDevice

QUANTITIES = {"leak": "conductance"}


def step(world, v, epoch_s):
    left = world.state.get("leak", 0)
    if left == 0 and world.rand.random() < 0.002:
        left = 20
    world.state["leak"] = max(0, left - 1)
    wet = world.stimuli.get("wet", bool(left))
    v["conductance"] = world.gauss(2600, 80) if wet else world.gauss(150, 15)


def i2c(world):
    return NoDevice()


def uart(world, name):
    return None
