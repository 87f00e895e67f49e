"""Byte-level parsing of every driver, under MicroPython, with frames laid out as the
datasheets give them (hand-written here, checksums worked out by hand in the comments)."""

from __future__ import annotations

import json

import pytest

from hil import micropython


def pms5003_frame(words: list[int], checksum: int | None = None) -> str:
    # 0x42 0x4D, length 28, 13 data words, checksum = sum of the first 30 bytes.
    body = bytes([0x42, 0x4D, 0x00, 0x1C]) + b"".join(w.to_bytes(2, "big") for w in words)
    total = sum(body) if checksum is None else checksum
    return (body + total.to_bytes(2, "big")).hex()


# SHT3x frame: T word 0x6666, its CRC 0x93, RH word 0x8000, its CRC 0xA2 (CRC-8 of each
# word by the datasheet's algorithm, worked out with its own check value CRC(0xBEEF) = 0x92).
SHT_FRAME = "666693" + "8000a2"


PMS_WORDS = [14, 22, 27, 12, 20, 25, 3000, 900, 150, 20, 5, 1, 0]

CASES = [
    # PMS5003: atmospheric PM1/PM2.5/PM10 are data words 4-6.
    ("pms5003", pms5003_frame(PMS_WORDS), {"ok": [12, 20, 25]}),
    ("pms5003", pms5003_frame(PMS_WORDS, checksum=0x0101), {"error": "FrameError"}),
    ("pms5003", pms5003_frame(PMS_WORDS)[:-4], {"error": "FrameError"}),
    # A UART read that starts mid-frame and holds one complete frame after it.
    ("pms5003-stream", pms5003_frame(PMS_WORDS)[24:] + pms5003_frame(PMS_WORDS), {"ok": [12, 20, 25]}),
    # SDS011 datasheet-style frame: PM2.5 = 0x04D4 / 10 = 123.6, PM10 = 0x0A3A / 10 = 261.8,
    # checksum = D4+04+3A+0A+A1+60 = 0x21D -> 0x1D.
    ("sds011", "aac0d4043a0aa1601dab", {"ok": [123.6, 261.8]}),
    ("sds011", "aac0d4043a0aa1601eab", {"error": "FrameError"}),
    # Streamed: a torn frame, then a good one.
    ("sds011-stream", "043a0aa1601dab" + "aac0d4043a0aa1601dab", {"ok": [123.6, 261.8]}),
    ("sds011-stream", "aac0d4043a0aa1601eab", {"ok": None}),
    # MH-Z19B: CO2 = 0x0260 = 608 ppm; check = 0xFF - ((86+02+60+47) & 0xFF) + 1 = 0xD1.
    ("mhz19", "ff8602604700000000d1", {"error": "FrameError"}),  # 10 bytes: wrong length
    ("mhz19", "ff860260470000" + "00d1", {"ok": 608}),
    ("mhz19", "ff860260470000" + "00d2", {"error": "FrameError"}),
    # The read command's own checksum byte is 0x79 (datasheet).
    ("mhz19-cmd", "", {"ok": 0x79}),
    # SHT3x datasheet 4.12: CRC-8 of 0xBEEF is 0x92.
    ("sht3x-crc", "beef", {"ok": 0x92}),
    # T raw 0x6666 -> -45 + 175 * 26214 / 65535 = 24.9996; RH raw 0x8000 -> 50.0008.
    ("sht3x", SHT_FRAME, None),
    # QMC5883L: status 0x01 (DRDY), X = +1200 LSB = 10 uT (LE), Y = -2400 = -20 uT, Z = 6000 = 50 uT.
    ("qmc5883l", "01" + "b004" + "a0f6" + "7017", {"ok": [10.0, -20.0, 50.0]}),
    ("qmc5883l", "03" + "b004" + "a0f6" + "7017", {"error": "FrameError"}),  # OVL set
    # MPU-6050: big-endian, 16384 LSB/g: (0, -0.5 g, 1 g).
    ("mpu6050", "0000" + "e000" + "4000", {"ok": [0.0, -0.5, 1.0]}),
    # HC-SR04: 580 us / 58 = 10 cm; a timeout (-1) is no reading.
    ("hcsr04", "580", {"ok": 10.0}),
    ("hcsr04", "-1", {"ok": None}),
]


@pytest.fixture(scope="module")
def results(node_path):
    lines = []
    for name, data, _ in CASES:
        lines.append(f"{name} {data}")
    lines.append("sht3x " + SHT_FRAME[:-2] + "00")  # bad CRC
    proc = micropython.run([str(_script())], micropypath=node_path, input=("\n".join(lines) + "\n").encode())
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def _script():
    from pathlib import Path

    return Path(__file__).parent / "mp" / "drivers_check.py"


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_driver_parsing(results, index):
    name, _, expected = CASES[index]
    got = results[index]
    if name == "sht3x":
        t, rh = got["ok"]
        assert t == pytest.approx(24.9996, abs=1e-3)
        assert rh == pytest.approx(50.0008, abs=1e-3)
    else:
        assert got == expected


def test_sht3x_bad_crc_is_refused(results):
    assert results[-1] == {"error": "FrameError"}
