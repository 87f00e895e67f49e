# The sensors on the stand-in chip's buses, as their datasheets lay out their bytes (the
# drivers' own tests, tests/firmware/test_drivers.py, hold the same layouts by hand).
# A part is a dict from bench.json: {"part": name, quantity: value, ...}; a quantity
# given as "index" takes the number of the frame (0, 1, 2 ...), so a test can tell which
# frame a driver returned.


def _value(part, name, index, default):
    value = part.get(name, default)
    return index if value == "index" else value


def frame(part, index):
    """The bytes a streaming part sends as its frame number `index`."""
    if part["part"] == "pms5003":
        # 0x42 0x4D, length 28, 13 words (CF=1 PM1/2.5/10, atmospheric PM1/2.5/10, counts),
        # checksum: the sum of the first 30 bytes.
        pm = [int(_value(part, n, index, 10)) for n in ("pm1", "pm25", "pm10")]
        out = bytearray(b"\x42\x4d\x00\x1c")
        for word in pm + pm + [0] * 7:
            out.append(word >> 8 & 0xFF)
            out.append(word & 0xFF)
        total = sum(out)
        out.append(total >> 8 & 0xFF)
        out.append(total & 0xFF)
        return bytes(out)
    if part["part"] == "sds011":
        # 0xAA 0xC0, PM2.5 and PM10 in tenths (little-endian), 2 id bytes, checksum, 0xAB.
        pm25 = int(_value(part, "pm25", index, 10) * 10)
        pm10 = int(_value(part, "pm10", index, 20) * 10)
        data = bytes((pm25 & 0xFF, pm25 >> 8, pm10 & 0xFF, pm10 >> 8, 0x12, 0x34))
        return b"\xaa\xc0" + data + bytes((sum(data) & 0xFF,)) + b"\xab"
    raise ValueError("not a streaming part: %s" % part["part"])


def answer(part, command):
    """What a command part (MH-Z19B) answers to a command, or None."""
    if part["part"] == "mhz19" and command[:3] == b"\xff\x01\x86":
        ppm = int(part.get("co2", 420))
        out = bytearray(b"\xff\x86\x00\x00\x00\x00\x00\x00\x00")
        out[2] = ppm >> 8
        out[3] = ppm & 0xFF
        out[8] = (0xFF - (sum(out[1:8]) & 0xFF) + 1) & 0xFF
        return bytes(out)
    return None


def _crc8(data):
    # Sensirion CRC-8 (polynomial 0x31, init 0xFF), worked here from the datasheet rather
    # than taken from drivers/sht3x.py: a part made with the driver's own code would
    # hide the driver's mistakes.
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _s16(value):
    return int(round(value)) & 0xFFFF


def read(part, reg, n):
    """n bytes an I2C part gives from register reg (None: a plain read)."""
    name = part["part"]
    if name == "sht3x":            # T and RH words, each with its CRC
        out = bytearray()
        for raw in (int((part.get("temperature_c", 20.0) + 45) * 65535 / 175),
                    int(part.get("humidity_pct", 50.0) * 65535 / 100)):
            word = bytes((raw >> 8, raw & 0xFF))
            out += word + bytes((_crc8(word),))
        return bytes(out[:n])
    if name == "qmc5883l":         # status 0x06 (DRDY), then X, Y, Z little-endian, 120 LSB/uT
        if reg == 0x06:
            return b"\x01"
        out = bytearray()
        for ut in part.get("mag_ut", (22.0, -4.0, 42.0)):
            raw = _s16(ut * 120)
            out += bytes((raw & 0xFF, raw >> 8))
        return bytes(out[:n])
    if name == "mpu6050":          # X, Y, Z big-endian, 16384 LSB/g: gravity tilted by tilt_deg
        import math
        tilt = math.radians(part.get("tilt_deg", 0.0))
        out = bytearray()
        for g in (0.0, math.sin(tilt), math.cos(tilt)):
            raw = _s16(g * 16384)
            out += bytes((raw >> 8, raw & 0xFF))
        return bytes(out[:n])
    raise OSError(19)
