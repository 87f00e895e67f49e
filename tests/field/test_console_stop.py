"""A Ctrl-C on the console (a technician's `node info` or `node flash` knocking) that stops
a waking node is followed by the REPL's soft reset, never taken for a crash: on a virtual
board with the real firmware, whenever the Ctrl-C lands the node's next boot says `soft`,
or `deepsleep` when it caught the wake before the node had begun (the sim HAL keeps its
reset cause in rtc.json, the board's RTC memory). The Ctrl-C is put at each point of the
start by a boot.py (mp/console_stop_boot.py); the soft reset is a Ctrl-D on the port, as
mpremote and the field tools send it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import serial

from hil.sim import node_config, write_json_atomic
from hil.sim_build import install

BOOT = Path(__file__).parent / "mp" / "console_stop_boot.py"


@pytest.mark.parametrize(
    "stop_at, next_reset", [("unmarked", "deepsleep"), ("marked", "soft"), ("node", "soft")]
)
def test_a_console_stop_at_any_point_of_a_wake_is_no_crash(
    boards, firmware_bundle, mosquitto, tmp_path, stop_at, next_reset
):
    node_id = f"cs-{stop_at}"
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    cfg = node_config(node_id, "leak", "xuhui", "caohejing", mosquitto.host, mosquitto.port, 60, seed=1)
    (flash / "config.json").write_text(json.dumps(cfg))
    write_json_atomic(flash / "control.json", {"stimuli": {}, "net": "up"})
    install(firmware_bundle, flash)
    shutil.copy(BOOT, flash / "boot.py")
    (flash / "stop_at").write_text(stop_at)
    # The node went to sleep: this start is a wake.
    write_json_atomic(flash / "rtc.json", {"mem": {}, "sleep_ms": 2000})

    board = boards()
    assert board.wait_console("KeyboardInterrupt"), board.console()
    assert not (flash / "stop_at").exists()
    assert f"{node_id} boot " not in board.console()  # stopped before the node said so
    with serial.Serial(board.port, 115200, timeout=1) as port:
        port.write(b"\x04")  # the friendly REPL's soft reset: main.py runs again
    assert board.wait_console(f"{node_id} boot "), board.console()
    said = re.findall(rf"^{node_id} boot \d+ reset=(\w+)", board.console().replace("\r", ""), re.M)
    assert said == [next_reset], board.console()
