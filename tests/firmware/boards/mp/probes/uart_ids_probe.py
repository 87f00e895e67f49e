# Runs under MicroPython on a stand-in chip (tests/firmware/test_board_serial.py): what the
# chip answers to the UART ids and pins an air node's sensors were opened with before
# (UART 1 for the particulate sensor, 2 for CO2, on the board's pins), and to the HAL's.
import json

import bench
import machine

board = __import__("hal." + bench.CHIP, None, None, ["HAL"])
pins = board.HAL.PINS
out = {}
for name, old_id in (("pm", 1), ("co2", 2)):
    tx, rx = pins["uart_" + name]
    for label, uart_id in (("old", old_id), ("hal", board.HAL.UARTS[name])):
        try:
            machine.UART(uart_id, baudrate=9600, tx=tx, rx=rx)
            out[label + "_" + name] = "ok"
        except ValueError as err:
            out[label + "_" + name] = str(err)
print(json.dumps(out))
