# Runs under MicroPython: feeds each driver's parser the frames given as hex on stdin
# (one "driver hex" per line) and prints one JSON result per line, so the host test
# holds the datasheet frames and the expected values.
import sys
import json
from drivers import frames, pms5003, sds011, mhz19, sht3x, qmc5883l, mpu6050, hcsr04


def run(name, data):
    if name == "pms5003":
        return list(pms5003.parse(data))
    if name == "pms5003-stream":
        found = frames.scan(data, pms5003.START, pms5003.FRAME_LEN, pms5003.parse)[0]
        return list(found) if found else None
    if name == "sds011-stream":
        found = frames.scan(data, sds011.START, sds011.FRAME_LEN, sds011.parse)[0]
        return list(found) if found else None
    if name == "sds011":
        return list(sds011.parse(data))
    if name == "mhz19":
        return mhz19.parse(data)
    if name == "mhz19-cmd":
        return mhz19.checksum(mhz19.READ_CMD)
    if name == "sht3x-crc":
        return sht3x.crc8(data)
    if name == "sht3x":
        return list(sht3x.parse(data))
    if name == "qmc5883l":
        return list(qmc5883l.parse(data[0], data[1:]))
    if name == "mpu6050":
        return list(mpu6050.parse(data))
    if name == "hcsr04":
        return hcsr04.distance_cm(int(data.decode()))
    raise ValueError(name)


for line in sys.stdin:
    name, _, hexdata = line.strip().partition(" ")
    data = bytes.fromhex(hexdata) if not name.startswith("hcsr04") else hexdata.encode()
    try:
        print(json.dumps({"ok": run(name, data)}))
    except Exception as err:
        print(json.dumps({"error": type(err).__name__}))
