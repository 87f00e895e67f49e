# Serial sensors stream fixed-size frames (or answer a command with one), and a read may
# start in the middle of one. A frame is read by its length, with a deadline: uart.read()
# with no size returns only after one whole UART timeout passes with no byte (py/stream.c
# reads until a read times out empty), which a sensor streaming every second never leaves.
import time


def scan(data, head, size, parse):
    """(value, None) for the first frame in data that starts with the two bytes `head` and
    parses; else (None, keep), with keep the offset from which data may still hold the
    start of a frame. A start sequence inside another frame's data, or a frame hit by line
    noise, fails parse and the scan goes on."""
    pos = data.find(head)
    while pos >= 0:
        if len(data) - pos < size:
            return None, pos
        try:
            return parse(data[pos:pos + size]), None
        except ValueError:
            pos = data.find(head, pos + 1)
    # No whole start sequence: its first byte may still end the data.
    return None, len(data) - 1 if data and data[-1] == head[0] else len(data)


def read_frame(uart, head, size, parse, within_ms):
    """parse() of the first whole frame the UART brings within within_ms, or None. Each
    read returns within the UART's own timeout (the HAL opens it short), so the deadline
    holds however the sensor streams."""
    data = b""
    start = time.ticks_ms()
    while True:
        chunk = uart.read(size)
        if chunk:
            data += chunk
            value, keep = scan(data, head, size, parse)
            if keep is None:
                return value
            data = data[keep:]
        if time.ticks_diff(time.ticks_ms(), start) >= within_ms:
            return None
