"""Serial sensors and the socket option on each board layer, under MicroPython with the
stand-in chips of tests/firmware/boards: a driver reads its sensor's frame by length
with a deadline, and returns the first whole frame after it began even while the sensor
streams without a pause (a read() with no size would only return once the line stayed
quiet for a whole UART timeout); the UARTs exist on the chip; the MQTT client sets
TCP_NODELAY by the number of the chip's own stack."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hil.micropython import interpreter
from hil.sim import DEFAULT_HEAP, write_json_atomic
from tests.firmware.boards import CHIPS, WIRING, bench_for, compile_standins

PROBES = Path(__file__).parent / "boards" / "mp" / "probes"


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return compile_standins(tmp_path_factory.mktemp("standins"))


def probe(tmp_path: Path, bundle: Path, standins: Path, bench: dict, script: str, *args: str) -> dict | str:
    """Run a probe on a stand-in chip wired as `bench`; its JSON line, or its console."""
    write_json_atomic(tmp_path / "bench.json", bench)
    env = dict(
        os.environ, MICROPYPATH=os.pathsep.join([str(standins), ".frozen", str(bundle), str(bundle / "lib")])
    )
    proc = subprocess.run(
        [interpreter(), "-X", f"heapsize={DEFAULT_HEAP}", str(PROBES / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last) if last.startswith("{") else proc.stdout


@pytest.mark.parametrize("driver", ["sds011", "pms5003"])
@pytest.mark.parametrize("chip", CHIPS)
def test_a_driver_returns_the_first_whole_frame_of_a_streaming_sensor(
    tmp_path, bundle, standins, chip, driver
):
    # A frame a second, the sensor started 3.3 s before the chip: frames 0-3 came before
    # the UART opened (none in its buffer), the rest stream on without a pause. Each
    # frame carries its number as its PM2.5 value.
    stream = {"part": driver, "period_ms": 1000, "phase_ms": -3300, "frames": 10, "pm25": "index"}
    bench = bench_for(chip, "air", uart={str(WIRING[chip]["pm_rx"]): stream})
    got = probe(tmp_path, bundle, standins, bench, "uart_probe.py", "pm", driver)
    assert isinstance(got, dict), got
    pm25 = got["value"][0] if driver == "sds011" else got["value"][1]
    # Within a frame time: the frame after the one on the line when the UART opened, not
    # the last of the stream.
    assert pm25 == got["on_line"] + 1, got


@pytest.mark.parametrize("chip", CHIPS)
def test_the_co2_sensor_answers_its_read_command(tmp_path, bundle, standins, chip):
    got = probe(tmp_path, bundle, standins, bench_for(chip, "air"), "uart_probe.py", "co2", "mhz19")
    assert isinstance(got, dict) and got["value"] == 612, got


@pytest.mark.parametrize("chip", CHIPS)
def test_the_air_sensors_uarts_exist_on_the_chip(tmp_path, bundle, standins, chip):
    got = probe(tmp_path, bundle, standins, bench_for(chip, "air"), "uart_ids_probe.py")
    assert got["hal_pm"] == got["hal_co2"] == "ok", got
    if chip == "rp2":
        # What the RP2040 answers to the ids and pins used before: GPIO 0/1 belong to
        # UART0, and there is no UART2 (ports/rp2/machine_uart.c).
        assert got["old_pm"] == "bad TX pin" and got["old_co2"] == "UART(2) doesn't exist", got


def test_the_mqtt_client_sets_nodelay_with_the_number_of_lwip(tmp_path, bundle, standins, mosquitto):
    bench = bench_for("rp2", "parking", lwip_setsockopt=True)
    out = probe(tmp_path, bundle, standins, bench, "nodelay_probe.py", mosquitto.host, str(mosquitto.port))
    assert "lwip.setsockopt() not implemented" not in str(out), out
    assert "tcp nodelay 1" in (tmp_path / "chip.log").read_text(), out
