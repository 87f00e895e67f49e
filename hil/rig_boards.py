"""Boards on a HIL rig, flashed the way a technician flashes them.

Each board gets the compiled firmware bundle and its node config (with `"hil": true`, so
the firmware takes stimulus lines on its console) through the provisioning code
(field/), which also waits for the node's birth message. After that the scenario
drives the board through its console (hil/node_handles.ConsoleNodeHandle)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import threading
from pathlib import Path

from field import bundle as bundles
from field import node_config as provision_config
from field.flash import flash_node
from hil.boards.virtual import VirtualBoard, VirtualBoardError
from hil.node_handles import WAKE_PIN_STIMULI, ConsoleNodeHandle, NodeHandleError, node_config, update_control
from hil.scenario import BoardSpec, Site

FLASH_TIMEOUT_S = 45.0
# How long a board may take to answer its REPL. A virtual board is an interpreter started
# on a loaded machine (the rig's broker, InfluxDB, edge and other boards share its cores).
BOARD_TIMEOUT_S = 30.0
# One board is flashed at a time: the provisioning code silences mpremote by swapping
# sys.stdout (contextlib.redirect_stdout), which two threads doing at once would leave
# swapped for the rest of the process (`hil run --jobs`).
_FLASHING = threading.Lock()


@functools.lru_cache(maxsize=1)
def firmware_bundle() -> bundles.Bundle:
    """The bundle, compiled once per process (mpy-cross takes seconds for the whole tree)."""
    out = Path(tempfile.mkdtemp(prefix="urbansense-bundle-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    try:
        return bundles.build(out)
    except bundles.BundleError as err:
        raise NodeHandleError(f"firmware bundle: {err}") from None


def _flash(port: str, spec: BoardSpec, site: Site, broker: tuple[str, int], platform: str) -> None:
    data = node_config(spec, site, broker, platform, hil_mode=True)
    try:
        config = provision_config.parse(data, spec.node)
    except provision_config.ConfigError as err:
        raise NodeHandleError(f"{spec.node}: node config: {err}") from None
    with _FLASHING:
        bundle = firmware_bundle()
        outcome = flash_node(
            port,
            config,
            bundle,
            timeout=FLASH_TIMEOUT_S,
            watch_host=broker[0],
            watch_port=broker[1],
            board_timeout=BOARD_TIMEOUT_S,
        )
    if not outcome.live:
        raise NodeHandleError(f"{spec.node} on {port} not live after flashing: {outcome.reason}")


class VirtualRigBoard(ConsoleNodeHandle):
    """A virtual board (the unix port behind a pty) flashed over its port like an ESP32."""

    def __init__(self, spec: BoardSpec, site: Site, broker: tuple[str, int], workdir: Path) -> None:
        self.board = VirtualBoard(Path(workdir) / "flash", workdir=Path(workdir))
        super().__init__(spec.node, "", "virtual", reset=self._power_cycle)
        self.spec, self.site, self.broker = spec, site, broker
        self._flashed = False

    def start(self) -> None:
        if not self._flashed:
            try:
                self.board.start()
            except VirtualBoardError as err:
                raise NodeHandleError(f"{self.node}: {err}") from None
            self.port = self.board.port
            self.description = f"virtual {self.port}"
            _flash(self.port, self.spec, self.site, self.broker, "sim")
            self._flashed = True
        super().start()

    @property
    def _sleeps(self) -> bool:
        return self.spec.schedule == "duty-cycled"

    def stimulate(self, values: dict) -> None:
        if not self._sleeps:
            super().stimulate(values)
            return
        # A sleeping board reads no console. On a rig its sensors and wake pins are driven
        # electrically; on a virtual board the sim HAL's control file plays the sensors and
        # a signal plays the pin interrupt.
        update_control(self.board.flash, stimuli=values)
        if any(n in WAKE_PIN_STIMULI for n in values):
            self.board.wake()

    def cut_network(self, down: bool) -> None:
        if not self._sleeps:
            super().cut_network(down)
        else:
            update_control(self.board.flash, net="down" if down else "up")

    def _power_cycle(self) -> None:
        self.board.power_cycle()

    def stop(self) -> None:
        super().stop()
        self.board.stop()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.board.console().splitlines()[-lines:])


class SerialRigBoard(ConsoleNodeHandle):
    """A real board on a serial port (e.g. an ESP32 on /dev/ttyUSB0); it reaches the rig's
    broker over its Wi-Fi, so the scenario's board config carries `wifi` and a broker host
    the board can reach (`config: {wifi: ..., broker: ...}`)."""

    def __init__(self, port: str, spec: BoardSpec, site: Site, broker: tuple[str, int]) -> None:
        super().__init__(spec.node, port, f"serial {port}")
        self.spec, self.site, self.broker = spec, site, broker
        self._flashed = False

    def start(self) -> None:
        if not self._flashed:
            _flash(self.port, self.spec, self.site, self.broker, self.spec.config.get("platform", "esp32"))
            self._flashed = True
        super().start()


def provisioned_virtual_board(
    spec: BoardSpec, site: Site, broker: tuple[str, int], workdir: Path
) -> VirtualRigBoard:
    return VirtualRigBoard(spec, site, broker, workdir)


def provisioned_serial_board(
    port: str, spec: BoardSpec, site: Site, broker: tuple[str, int]
) -> SerialRigBoard:
    return SerialRigBoard(port, spec, site, broker)
