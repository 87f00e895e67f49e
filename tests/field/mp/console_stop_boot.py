# boot.py of a virtual board in tests/field/test_console_stop.py, under MicroPython: once
# (it deletes the file `stop_at` that asks for it), a Ctrl-C (KeyboardInterrupt, as the unix
# port raises for the SIGINT a virtual board's Ctrl-C is) lands in main.py at the point the
# file names:
#   "unmarked": while the sim HAL reads why the chip started, before it marks the boot;
#   "marked":   the instant after the sim HAL marked the boot as one a kill ends;
#   "node":     as the node begins to make itself (its first file call).
import os

import files

try:
    with open("stop_at") as f:
        STOP_AT = f.read().strip()
    os.remove("stop_at")
except OSError:
    STOP_AT = None

if STOP_AT:
    _exists, _write_json, _makedirs = files.exists, files.write_json, files.makedirs

    def exists(path):
        if STOP_AT == "unmarked" and path == "wdt.reset":
            raise KeyboardInterrupt
        return _exists(path)

    def write_json(path, obj):
        _write_json(path, obj)
        if STOP_AT == "marked" and path == "rtc.json" and list(obj) == ["mem"]:
            raise KeyboardInterrupt

    def makedirs(path):
        if STOP_AT == "node" and path == "state":
            raise KeyboardInterrupt
        _makedirs(path)

    files.exists, files.write_json, files.makedirs = exists, write_json, makedirs
