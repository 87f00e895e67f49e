"""Detection logic (firmware/node/detect.py) under MicroPython, fed with noisy sample
sequences built here from a seeded generator."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from hil import micropython

SCRIPT = Path(__file__).parent / "mp" / "detect_check.py"
EARTH = (22.0, -4.0, 42.0)


def run(node_path, scenarios: list[dict]) -> list[dict]:
    lines = "".join(json.dumps(s) + "\n" for s in scenarios).encode()
    # The test data (hundreds of samples in one JSON line) needs more heap than the node.
    proc = micropython.run([str(SCRIPT)], heap="512k", micropypath=node_path, input=lines)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def parking_samples(
    rng: random.Random, car: list[bool], drift_per_sample: float, noise: float = 1.0, car_ut: float = 35.0
) -> list[dict]:
    norm = math.sqrt(sum(c * c for c in EARTH))
    out = []
    for i, present in enumerate(car):
        drift = drift_per_sample * i  # slow baseline drift (temperature, nearby steel)
        scale = (norm + drift + (car_ut if present else 0.0)) / norm
        vec = [c * scale + rng.gauss(0, noise) for c in EARTH]
        out.append({"mag_x": vec[0], "mag_y": vec[1], "mag_z": vec[2], "battery_v": 3.6})
    return out


def test_parking_one_arrival_one_departure_despite_noise_and_drift(node_path):
    rng = random.Random(7)
    car = [False] * 60 + [True] * 40 + [False] * 60
    # 0.05 uT per sample: 8 uT of drift over the run, more than half the 15 uT delta,
    # which a fixed baseline would turn into a phantom car.
    samples = parking_samples(rng, car, drift_per_sample=0.05)
    (res,) = run(node_path, [{"kind": "parking", "samples": samples}])
    names = [(name, state) for _, name, state in res["events"]]
    assert names == [("occupancy", True), ("occupancy", False)]
    arrive, leave = res["events"][0][0], res["events"][1][0]
    assert 60 <= arrive <= 63 and 100 <= leave <= 103
    assert res["last"]["occupied"] is False


def test_parking_drift_alone_raises_nothing(node_path):
    rng = random.Random(11)
    samples = parking_samples(rng, [False] * 300, drift_per_sample=0.1)  # 30 uT over the run
    (res,) = run(node_path, [{"kind": "parking", "samples": samples}])
    assert res["events"] == []


def leak_samples(pattern: list[bool]) -> list[dict]:
    return [{"conductance": 2600.0 if wet else 150.0, "battery_v": 3.6} for wet in pattern]


def test_flickering_leak_is_debounced_and_a_real_one_is_reported_once(node_path):
    flicker = [False] * 5 + [True, False, True, True, False, True, False] * 4 + [False] * 5
    real = [False] * 5 + [True] * 10 + [False] * 10
    res = run(
        node_path,
        [{"kind": "leak", "samples": leak_samples(flicker)}, {"kind": "leak", "samples": leak_samples(real)}],
    )
    assert res[0]["events"] == []
    assert [(n, s) for _, n, s in res[1]["events"]] == [("leak", True), ("leak", False)]


def tilt_samples(angles: list[float], cover=False) -> list[dict]:
    return [
        {
            "_acc": [0.0, math.sin(math.radians(a)), math.cos(math.radians(a))],
            "ch4_lel": 0.5,
            "h2s_ppm": 0.2,
            "water_level_cm": 30.0,
            "cover_open": cover,
            "battery_v": 3.6,
        }
        for a in angles
    ]


def test_cover_tilt_15_degrees_alarms_and_5_does_not(node_path):
    res = run(
        node_path,
        [
            {"kind": "manhole", "samples": tilt_samples([0.0] * 3 + [5.0] * 10)},
            {"kind": "manhole", "samples": tilt_samples([0.0] * 3 + [15.0] * 10 + [0.5] * 3)},
        ],
    )
    assert res[0]["events"] == []
    assert res[0]["last"]["tilt_deg"] == pytest.approx(5.0, abs=0.1)
    assert [(n, s) for _, n, s in res[1]["events"]] == [("tilt", True), ("tilt", False)]


def test_tilt_is_relative_to_the_installed_angle(node_path):
    # Installed leaning 20 degrees: that pose is "seated"; 25 degrees is 5 more, no alarm.
    samples = tilt_samples([20.0] * 3 + [25.0] * 5)
    (res,) = run(node_path, [{"kind": "manhole", "samples": samples}])
    assert res["events"] == []


def test_ch4_over_threshold_one_alarm_one_clear(node_path):
    ch4 = [0.5] * 3 + [12.0, 9.5, 11.0, 12.5] + [9.2] * 3 + [2.0] * 3
    samples = tilt_samples([0.0] * len(ch4))
    for s, v in zip(samples, ch4):
        s["ch4_lel"] = v
    (res,) = run(node_path, [{"kind": "manhole", "samples": samples}])
    # 9.5 and 9.2 lie inside the 10 % hysteresis band (9..10): no flapping.
    assert [(i, n, s) for i, n, s in res["events"]] == [(3, "ch4", True), (10, "ch4", False)]
