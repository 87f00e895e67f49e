# Runs under MicroPython in a virtual node's flash folder, imported in place of main:
# boots the node through main.py with node.drop wrapped, so that every drop prints the
# modules loaded just before it and just after it. Prints the phase table first and the
# modules still loaded when the node stops (deep sleep, reset) last, one JSON per line.
import json
import sys

import node

_drop = node.drop


def _modules():
    return sorted(sys.modules)


def drop(*phases):
    before = _modules()
    _drop(*phases)
    print("@drop " + json.dumps({"phases": phases, "before": before, "after": _modules()}))


node.drop = drop   # before main imports the modules that take drop from node
print("@phases " + json.dumps(node.PHASES))
try:
    import main  # noqa: F401  (booting the node is the point)
except SystemExit as stop:
    print("@stop " + json.dumps({"code": stop.args[0], "modules": _modules()}))
