# Winsen MH-Z19B NDIR CO2 sensor on a UART at 9600 8N1.
# Read command (datasheet, "Read CO2 concentration"): FF 01 86 00 00 00 00 00 79.
# Answer: FF 86 HIGH LOW - - - - CHECK, with CO2 = HIGH*256 + LOW ppm and
# CHECK = (0xFF - (byte1 + ... + byte7)) + 1, modulo 256.
from drivers.frames import read_frame

READ_CMD = b"\xff\x01\x86\x00\x00\x00\x00\x00\x79"
ANSWER = b"\xff\x86"
# It answers a read command at once; stale bytes before the answer are skipped by its
# start bytes, so no drain (a read() with no size would wait a whole UART timeout).
WITHIN_MS = 500


class FrameError(ValueError):
    pass


def checksum(frame):
    return (0xFF - (sum(frame[1:8]) & 0xFF) + 1) & 0xFF


def parse(frame):
    """A 9-byte answer -> CO2 in ppm."""
    if len(frame) != 9 or frame[0] != 0xFF or frame[1] != 0x86:
        raise FrameError("not a read answer")
    if checksum(frame) != frame[8]:
        raise FrameError("checksum mismatch")
    return frame[2] << 8 | frame[3]


class MHZ19:
    def __init__(self, uart):
        self.uart = uart

    def read(self):
        self.uart.write(READ_CMD)
        return read_frame(self.uart, ANSWER, 9, parse, WITHIN_MS)   # None: no answer
