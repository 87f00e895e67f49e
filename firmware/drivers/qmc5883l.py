# QST QMC5883L 3-axis magnetometer on I2C (address 0x0D).
# Registers (datasheet 9.2): 0x00-0x05 X, Y, Z as 16-bit little-endian two's complement;
# 0x06 status (bit0 DRDY, bit1 OVL overflow, bit2 DOR); 0x09 control 1 (mode, ODR, range,
# oversampling); 0x0B SET/RESET period (datasheet: write 0x01).
# Range 2 G gives 12000 LSB/G; 1 G = 100 uT, so 120 LSB per uT.
ADDRESS = 0x0D
LSB_PER_UT = 120.0
# Continuous mode (01), 10 Hz (00), 2 G (00), oversampling 512 (00).
CONTROL_1 = 0x01


class FrameError(ValueError):
    pass


def _s16(lo, hi):
    value = hi << 8 | lo
    return value - 65536 if value & 0x8000 else value


def parse(status, data):
    """Status byte and the 6 data bytes -> (x, y, z) in uT."""
    if len(data) != 6:
        raise FrameError("data is %d bytes, not 6" % len(data))
    if status & 0x02:
        raise FrameError("overflow: field outside the 2 G range")
    return (_s16(data[0], data[1]) / LSB_PER_UT, _s16(data[2], data[3]) / LSB_PER_UT,
            _s16(data[4], data[5]) / LSB_PER_UT)


class QMC5883L:
    def __init__(self, i2c, address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self._data = bytearray(6)
        self._status = bytearray(1)
        i2c.writeto_mem(address, 0x0B, b"\x01")
        i2c.writeto_mem(address, 0x09, bytes((CONTROL_1,)))

    def read(self):
        self.i2c.readfrom_mem_into(self.address, 0x06, self._status)
        if not self._status[0] & 0x01:
            return None            # no new sample since the last read (DRDY low)
        self.i2c.readfrom_mem_into(self.address, 0x00, self._data)
        return parse(self._status[0], self._data)
