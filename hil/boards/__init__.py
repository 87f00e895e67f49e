"""Virtual boards: the MicroPython unix port behind a pseudo-terminal, answering the raw
REPL as a real board does, so field/serial_board.py and mpremote drive it like an ESP32."""
