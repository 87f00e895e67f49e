# The node application: the table of its phases, and the constants more than one of its
# modules reads (here rather than in node.app, which imports those modules).
#
# Loaded bytecode lives in the heap until its module is gone from sys.modules and from
# its package. The node's code comes in three phases that are never in the heap
# together (sampling, publishing, commands), and PHASES lists each one's modules by name
# prefix ("drivers": the package and every driver). load() imports a phase's first
# module (the others come with it); drop() takes out every module of the phases named.
# Two more rows are not phases of their own: the protocol modules, which publishing (its
# topics) and commands (the decoder, the validator) drop as soon as they are done with
# them; and asyncio, which a duty-cycled node drops after publishing and an always-on
# node runs in.
import gc
import sys

from micropython import const

PHASES = {
    # the sampler and its kind's part, detection, the drivers, the sim HAL's world
    "sampling": ("node.sensors", "node.sample_", "node.detect", "drivers", "hal.sim_"),
    # the messages and the replay of the queue, the MQTT client
    "publishing": ("node.link", "mqtt_client"),
    # the edge's receipts: what leaves the queues, what is sent again, time from the edge
    "receipts": ("node.receipts",),
    # running commands; the config validator (main.py's check at boot is this phase's)
    "commands": ("node.commands", "node.config"),
    "protocols": ("protocols",),
    "event loop": ("asyncio",),
}

FW_VERSION = "1.0.0"
COUNTERS_FILE = "state/counters.json"
WATCHDOG_MS = const(8000)   # rp2's watchdog tops out near 8.3 s


def load(phase):
    """The first module of a phase, imported if it is not loaded yet."""
    name = PHASES[phase][0]
    __import__(name)
    return sys.modules[name]


def drop(*phases):
    """Drop every loaded module of these phases from sys.modules and from its package, so
    the collector can free their code."""
    modules = sys.modules
    for phase in phases:
        for name in [n for n in modules if n.startswith(PHASES[phase])]:
            del modules[name]
            pkg, _, attr = name.rpartition(".")
            if pkg in modules:   # not a top-level module, nor one whose package went first
                modules[pkg].__dict__.pop(attr, None)
    scrub()
    gc.collect()


def scrub(depth=16):
    """Overwrite the C stack below the caller. The collector scans the C stack
    conservatively: a pointer a returned call left there keeps what it points at alive."""
    a = b = c = d = e = f = g = h = 0  # noqa: F841 (stack slots, each overwritten)
    if depth:
        scrub(depth - 1)
