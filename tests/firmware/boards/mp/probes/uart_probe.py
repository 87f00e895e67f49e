# Runs under MicroPython on a stand-in chip (tests/firmware/test_board_serial.py): opens a
# sensor's UART as the board's HAL does, reads one value with the sensor's driver, and
# prints it with the number of the frame that was on the line when the UART opened.
# argv: uart name (pm, co2), driver (pms5003, sds011, mhz19)
import json
import sys

import bench

name, driver = sys.argv[1], sys.argv[2]
board = __import__("hal." + bench.CHIP, None, None, ["HAL"])
hal = board.HAL({"node": "probe", "kind": "air", "calibration": {}, "pins": {},
                 "wifi": {"ssid": "street-net"}, "broker": {"host": "127.0.0.1"}})
uart = hal.uart(name)
if driver == "pms5003":
    from drivers.pms5003 import PMS5003 as Driver
elif driver == "sds011":
    from drivers.sds011 import SDS011 as Driver
else:
    from drivers.mhz19 import MHZ19 as Driver
value = Driver(uart).read()
part = uart.part
on_line = None
if part.get("period_ms"):
    t0 = bench.state["boot_ns"] + part.get("phase_ms", 0) * 1000000
    on_line = (uart.opened_ns - t0) // (part["period_ms"] * 1000000)
print(json.dumps({"value": list(value) if type(value) is tuple else value, "on_line": on_line}))
