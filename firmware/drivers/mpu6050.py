# InvenSense MPU-6050 accelerometer (manhole cover tilt) on I2C (address 0x68).
# PWR_MGMT_1 (0x6B) = 0 wakes it from sleep; ACCEL_XOUT_H (0x3B): 6 bytes, X, Y, Z as
# 16-bit big-endian two's complement; at the default +-2 g range 16384 LSB per g.
import math

ADDRESS = 0x68
LSB_PER_G = 16384.0


class FrameError(ValueError):
    pass


def _s16(hi, lo):
    value = hi << 8 | lo
    return value - 65536 if value & 0x8000 else value


def parse(data):
    """6 bytes from 0x3B -> (x, y, z) in g."""
    if len(data) != 6:
        raise FrameError("data is %d bytes, not 6" % len(data))
    return (_s16(data[0], data[1]) / LSB_PER_G, _s16(data[2], data[3]) / LSB_PER_G,
            _s16(data[4], data[5]) / LSB_PER_G)


def angle_deg(a, b):
    """Angle between two acceleration vectors: the tilt relative to the installed pose."""
    dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    na = math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
    nb = math.sqrt(b[0] * b[0] + b[1] * b[1] + b[2] * b[2])
    if na == 0 or nb == 0:
        raise FrameError("zero vector: sensor not answering")
    cos = max(-1.0, min(1.0, dot / (na * nb)))
    return math.degrees(math.acos(cos))


class MPU6050:
    def __init__(self, i2c, address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self._data = bytearray(6)
        i2c.writeto_mem(address, 0x6B, b"\x00")

    def read(self):
        self.i2c.readfrom_mem_into(self.address, 0x3B, self._data)
        return parse(self._data)
