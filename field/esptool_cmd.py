"""esptool command lines that put the MicroPython base image on an ESP32.

The image's offset differs by chip (MicroPython's download page for each board says the
same): the original ESP32 and the ESP32-S2 keep a second-stage bootloader at 0x1000, the
ESP32-S3, -C3 and -C6 at 0x0. Writing at the wrong offset leaves a board that does not boot.

No hardware is attached where the tests run, so the tests check the command lines built
here (and that esptool's own parser accepts them), not a real flash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

IMAGE_OFFSETS = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
}
FLASH_BAUD = 460800  # what MicroPython's instructions use; USB-serial chips on boards cope


class EsptoolError(Exception):
    """esptool failed or was asked for something it cannot do (one line)."""


def chip_name(chip: str) -> str:
    name = chip.lower().replace("-", "")
    if name not in IMAGE_OFFSETS:
        raise EsptoolError(f"unknown chip {chip!r}: one of {', '.join(IMAGE_OFFSETS)}")
    return name


def _base(chip: str, port: str) -> list[str]:
    return [sys.executable, "-m", "esptool", "--chip", chip_name(chip), "--port", port]


def erase_command(chip: str, port: str) -> list[str]:
    return [*_base(chip, port), "erase-flash"]


def write_command(chip: str, port: str, image: Path, baud: int = FLASH_BAUD) -> list[str]:
    offset = IMAGE_OFFSETS[chip_name(chip)]
    return [*_base(chip, port), "--baud", str(baud), "write-flash", "--compress", f"0x{offset:x}", str(image)]


def flash_image(chip: str, port: str, image: Path, timeout: float = 300.0) -> None:
    """Erase the chip and write the image (the board then boots plain MicroPython)."""
    if not Path(image).is_file():
        raise EsptoolError(f"image {image} does not exist")
    for command in (erase_command(chip, port), write_command(chip, port, image)):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise EsptoolError(
                f"esptool {command[command.index('--port') + 2]} failed: "
                f"{_reason(proc.stdout + proc.stderr, proc.returncode)}"
            )


def _reason(output: str, code: int) -> str:
    """esptool's own words for what went wrong (its "fatal error" line), else its last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in lines:
        if "error" in line.lower():
            return line.split("A fatal error occurred: ")[-1]
    return lines[-1] if lines else f"exit code {code}"
