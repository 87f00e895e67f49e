# Winsen MH-Z19B NDIR CO2 sensor on a UART at 9600 8N1.
# Read command (datasheet, "Read CO2 concentration"): FF 01 86 00 00 00 00 00 79.
# Answer: FF 86 HIGH LOW - - - - CHECK, with CO2 = HIGH*256 + LOW ppm and
# CHECK = (0xFF - (byte1 + ... + byte7)) + 1, modulo 256.
READ_CMD = b"\xff\x01\x86\x00\x00\x00\x00\x00\x79"


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
        self.uart.read()          # drop stale bytes so the answer is aligned
        self.uart.write(READ_CMD)
        answer = self.uart.read(9)
        if not answer or len(answer) != 9:
            return None           # no answer within the UART timeout
        return parse(answer)
