# Sensirion SHT3x temperature / humidity on I2C (address 0x44, or 0x45 with ADDR high).
# Single shot, high repeatability, no clock stretching: command 0x2400, then read 6 bytes
# after >= 15 ms: T MSB, T LSB, CRC, RH MSB, RH LSB, CRC. CRC-8: polynomial 0x31, init 0xFF
# (datasheet 4.12; its example: CRC(0xBEEF) = 0x92).
# T = -45 + 175 * raw / 65535 (degC); RH = 100 * raw / 65535 (%).
import time

ADDRESS = 0x44
MEASURE = b"\x24\x00"


class FrameError(ValueError):
    pass


def crc8(data):
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def parse(frame):
    """6 bytes -> (temperature_c, humidity_pct)."""
    if len(frame) != 6:
        raise FrameError("frame is %d bytes, not 6" % len(frame))
    if crc8(frame[0:2]) != frame[2] or crc8(frame[3:5]) != frame[5]:
        raise FrameError("CRC mismatch")
    t_raw = frame[0] << 8 | frame[1]
    rh_raw = frame[3] << 8 | frame[4]
    return (-45 + 175 * t_raw / 65535, 100 * rh_raw / 65535)


class SHT3x:
    def __init__(self, i2c, address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(6)

    def read(self):
        self.i2c.writeto(self.address, MEASURE)
        time.sleep_ms(16)         # measurement takes up to 15.5 ms at high repeatability
        self.i2c.readfrom_into(self.address, self._buf)
        return parse(self._buf)
