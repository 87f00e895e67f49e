# The node application. forget() is here because every part of the firmware uses it: a
# module's bytecode lives in the heap until the module is dropped from both sys.modules
# and its package, and a node only keeps the code of the phase it is in.
import gc
import sys


def forget(*names):
    """Drop the named modules (if loaded) so the collector can free their code."""
    for name in names:
        if name in sys.modules:
            del sys.modules[name]
            pkg, _, attr = name.rpartition(".")
            try:
                delattr(sys.modules[pkg], attr)
            except (KeyError, AttributeError):
                pass   # a top-level module, or one its package never bound
    gc.collect()
