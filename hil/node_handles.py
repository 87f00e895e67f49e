"""How a scenario drives one node on the rig, whatever the node runs on.

- `SimNodeHandle`: a sim node (the firmware under the unix port, supervised by hil/sim.py);
  stimuli go through its `control.json`.
- `ConsoleNodeHandle`: a board on a serial port, real (/dev/ttyUSB0) or virtual (the unix
  port behind a pty), flashed by the provisioning code and running the firmware in HIL
  stimulus mode; stimuli are `!stim {...}` / `!net down|up` lines on its console
  (firmware/README.md, contract 3).

Both give the runner the same few verbs, so one scenario file runs on all of them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from hil.scenario import BoardSpec, Site


class NodeHandleError(RuntimeError):
    """A board could not be set up or did not accept a stimulus."""


class NodeHandle(Protocol):
    node: str
    description: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def stimulate(self, values: dict[str, Any]) -> None: ...  # a None value removes a stimulus
    def cut_network(self, down: bool) -> None: ...
    def power_loss(self) -> None: ...
    def log_tail(self, lines: int = 30) -> str: ...


# Stimuli that drive a wake pin on a duty-cycled node (leak probe, cover switch): on a
# board the pin itself wakes the node; a sim node is woken by its supervisor instead.
WAKE_PIN_STIMULI = ("wet", "conductance", "cover_open", "tilt_deg")


def update_control(flash_dir: Path, stimuli: dict[str, Any] | None = None, net: str | None = None) -> None:
    """Change the sim HAL's `control.json` (firmware/README.md, contract 3): set stimuli,
    remove those given as None, set the network up or down. Written to a temp file and
    renamed, so the node never reads half a file."""
    path = Path(flash_dir) / "control.json"
    try:
        control = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        control = {}
    current = dict(control.get("stimuli") or {})
    for name, value in (stimuli or {}).items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    control["stimuli"] = current
    if net is not None:
        control["net"] = net
    tmp = path.with_name("control.json.tmp")
    tmp.write_text(json.dumps(control))
    tmp.replace(path)


def apply_stimulus(sim: Any, values: dict[str, Any]) -> None:
    """Set (or, for None, remove) stimuli on a hil.sim.SimNode; wake it if it sleeps and a
    stimulus drives one of its wake pins."""
    for name, value in values.items():
        if value is None:
            sim.clear_stimulus(name)
        else:
            sim.set_stimulus(name, value)
    if sim.config.get("schedule") == "duty-cycled" and any(n in WAKE_PIN_STIMULI for n in values):
        sim.wake()


def node_config(
    spec: BoardSpec, site: Site, broker: tuple[str, int], platform: str, hil_mode: bool
) -> dict[str, Any]:
    """The node's config.json (firmware/README.md, contract 1)."""
    config: dict[str, Any] = {
        "node": spec.node,
        "district": site.district,
        "zone": site.zone,
        "kind": spec.kind,
        "platform": platform,
        "interval_s": spec.interval_s,
        "broker": {"host": broker[0], "port": broker[1]},
        "thresholds": dict(spec.thresholds),
        "hil": hil_mode,
    }
    if spec.schedule:
        config["schedule"] = spec.schedule
    config.update(spec.config)
    return config


class SimNodeHandle:
    """A sim node run by hil/sim.py's SimNode."""

    def __init__(self, spec: BoardSpec, site: Site, broker: tuple[str, int], flash_dir: Path) -> None:
        from hil.sim import SimNode  # the firmware's harness API (firmware/README.md, contract 4)

        self.node = spec.node
        self.spec = spec
        self.flash_dir = Path(flash_dir)
        self.sim = SimNode(self.flash_dir, node_config(spec, site, broker, "sim", False))
        self.description = "sim"

    def start(self) -> None:
        self.sim.start()

    def stop(self) -> None:
        self.sim.stop()

    def stimulate(self, values: dict[str, Any]) -> None:
        apply_stimulus(self.sim, values)

    def cut_network(self, down: bool) -> None:
        self.sim.cut_network(down)

    def power_loss(self) -> None:
        self.sim.power_loss()

    def log_tail(self, lines: int = 30) -> str:
        return self.sim.console_tail(lines)


class ConsoleNodeHandle:
    """A board on a serial port running the firmware with `"hil": true`.

    The console is opened with pyserial; a reader thread keeps what the node prints (for
    the report) and picks out the `!ok` / `!err` answers to stimulus lines."""

    ANSWER_TIMEOUT_S = 5.0

    def __init__(self, node: str, port: str, description: str, reset: Any = None) -> None:
        self.node = node
        self.port = port
        self.description = description
        self._reset = reset  # callable emulating a power cycle, or None
        self._serial: Any = None
        self._lines: list[str] = []
        self._answers: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._closing = False

    def start(self) -> None:
        self._open()

    def _open(self) -> None:
        import serial  # pyserial

        try:
            self._serial = serial.Serial(self.port, 115200, timeout=0.2)
        except serial.SerialException as err:
            raise NodeHandleError(f"{self.node}: cannot open {self.port}: {err}") from None
        self._closing = False
        self._reader = threading.Thread(target=self._read, name=f"console-{self.node}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while not self._closing:
            try:
                chunk = self._serial.read(256)
            except Exception:  # the port went away (board reset, unplugged): stop reading
                return
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                with self._cond:
                    self._lines.append(line)
                    if line.startswith("!ok") or line.startswith("!err"):
                        self._answers.append(line)
                        self._cond.notify_all()

    def _send(self, line: str) -> None:
        with self._cond:
            before = len(self._answers)
        self._serial.write(line.encode() + b"\r\n")
        self._serial.flush()
        deadline = time.monotonic() + self.ANSWER_TIMEOUT_S
        with self._cond:
            while len(self._answers) == before:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NodeHandleError(
                        f"{self.node}: no answer on {self.port} to {line!r} "
                        f'(is the firmware running with "hil": true?)'
                    )
                self._cond.wait(left)
            answer = self._answers[before]
        if answer.startswith("!err"):
            raise NodeHandleError(f"{self.node}: {line!r} refused: {answer[4:].strip()}")

    def stimulate(self, values: dict[str, Any]) -> None:
        self._send("!stim " + json.dumps(values, separators=(",", ":")))

    def cut_network(self, down: bool) -> None:
        self._send("!net " + ("down" if down else "up"))

    def power_loss(self) -> None:
        if self._reset is None:
            raise NodeHandleError(f"{self.node}: this rig cannot cut the power of {self.port}")
        self._close()
        self._reset()
        self._open()

    def stop(self) -> None:
        self._close()

    def _close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.join(2)
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def log_tail(self, lines: int = 30) -> str:
        with self._cond:
            return "\n".join(self._lines[-lines:])
