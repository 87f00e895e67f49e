# Nova Fitness SDS011 particulate sensor on a UART at 9600 8N1.
# Data frame (datasheet "Laser Dust Sensor Control Protocol V1.3"): 0xAA, 0xC0,
# PM2.5 low, PM2.5 high, PM10 low, PM10 high, ID byte 1, ID byte 2,
# checksum = (sum of the six data bytes) & 0xFF, 0xAB. Values are tenths of ug/m3.
from drivers.frames import read_frame

FRAME_LEN = 10
START = b"\xaa\xc0"
# It reports once a second (datasheet, "Working period"): a whole frame within this.
WITHIN_MS = 2000


class FrameError(ValueError):
    pass


def parse(frame):
    """One 10-byte frame -> (pm25, pm10) in ug/m3."""
    if len(frame) != FRAME_LEN:
        raise FrameError("frame is %d bytes, not 10" % len(frame))
    if frame[0] != 0xAA or frame[1] != 0xC0 or frame[9] != 0xAB:
        raise FrameError("bad head or tail byte")
    if sum(frame[2:8]) & 0xFF != frame[8]:
        raise FrameError("checksum mismatch")
    return ((frame[3] << 8 | frame[2]) / 10, (frame[5] << 8 | frame[4]) / 10)


class SDS011:
    def __init__(self, uart):
        self.uart = uart

    def read(self):
        return read_frame(self.uart, START, FRAME_LEN, parse, WITHIN_MS)
