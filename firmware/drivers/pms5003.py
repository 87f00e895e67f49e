# Plantower PMS5003 particulate sensor on a UART at 9600 8N1.
# Frame (datasheet "Appendix I"): 0x42 0x4D, frame length (2 bytes, = 2*13+2 = 28), 13 data
# words big-endian, then a 16-bit checksum = sum of all preceding bytes. Data words 1-3 are
# PM1.0/PM2.5/PM10 "CF=1" (factory standard particle), 4-6 the same under atmospheric
# environment (the ones to report outdoors), 7-12 particle counts, 13 reserved.
from drivers.frames import read_frame

FRAME_LEN = 32
START = b"\x42\x4d"
# Active mode streams a frame every 200-800 ms, or every 2.3 s while the readings hold
# steady (datasheet, "Output result"): one whole frame comes within this.
WITHIN_MS = 3000


class FrameError(ValueError):
    pass


def parse(frame):
    """One 32-byte frame -> (pm1, pm25, pm10) in ug/m3, atmospheric environment."""
    if len(frame) != FRAME_LEN:
        raise FrameError("frame is %d bytes, not 32" % len(frame))
    if frame[0] != 0x42 or frame[1] != 0x4D:
        raise FrameError("bad start bytes")
    if (frame[2] << 8 | frame[3]) != 28:
        raise FrameError("bad frame length")
    total = 0
    for i in range(30):
        total += frame[i]
    if total & 0xFFFF != (frame[30] << 8 | frame[31]):
        raise FrameError("checksum mismatch")
    return (frame[10] << 8 | frame[11], frame[12] << 8 | frame[13], frame[14] << 8 | frame[15])


class PMS5003:
    def __init__(self, uart):
        self.uart = uart

    def read(self):
        # None: no frame yet (it warms up for ~30 s after power on)
        return read_frame(self.uart, START, FRAME_LEN, parse, WITHIN_MS)
