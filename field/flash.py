"""Put a bundle and a node's config on a board, prove they arrived, start the node and wait
until it says it is online on the broker.

Steps: check the bundle against its manifest; start watching the broker (so a broker the
laptop cannot reach is reported before the board is touched); soft-reset the board into the
raw REPL; check which node the board holds (another node is replaced only when asked, and
then its queue and state go with it); remove files an older bundle left; copy the bundle,
config.json and bundle.json; read every file's sha256 back from the board; restart the
program; read the console while waiting for the birth message. The outcome is "live" or
the precise reason it is not."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field

from field.birth import BirthWatcher, BrokerError
from field.bundle import ON_DEVICE_MANIFEST, Bundle
from field.node_config import CA_ON_DEVICE, ConfigError, NodeConfig
from field.serial_board import BoardError, BoardLost, SerialBoard

CONSOLE_KEPT = 40  # console lines kept for the diagnosis and the result file
# What a node keeps of its own in flash besides the bundle and config.json
# (firmware/README.md): its boot counter, counters and commands (state/), its offline queue
# (queue/), and on the sim platform its RTC memory (rtc.json). A board given to another node
# loses them: the queue's readings would otherwise go out under the new node's id.
NODE_STATE = ("state", "queue", "rtc.json")


class VerifyError(Exception):
    """A file on the board does not match what was written."""


class OtherNodeError(Exception):
    """The board holds another node than the one to flash, and replacing it was not asked for."""


@dataclass
class Outcome:
    """One node's result, as the technician sees it and as the result files store it."""

    node: str
    port: str
    status: str  # "live"; "flashed" (verified, birth not watched); "failed"; "skipped"
    reason: str = ""
    fw: str | None = None
    boot: int | None = None
    reset: str | None = None
    bundle: str | None = None
    seconds: float = 0.0
    console: list[str] = field(default_factory=list)
    held: str | None = None  # the node the board held before (None: none, or not read)
    touched: bool = False  # whether anything on the board was changed

    @property
    def live(self) -> bool:
        return self.status == "live"

    def to_dict(self) -> dict:
        return asdict(self)


# What the firmware prints when it cannot go online (firmware/README.md, contract 5), and
# the words a technician needs instead. The first matching line wins, newest first.
_DIAGNOSES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"config error: (.*)"), "the node refused its config: {0}"),
    (re.compile(r"error (?:wifi|wlan|network)\b:?\s*(.*)", re.I), "no Wi-Fi: {0}"),
    (
        re.compile(
            r"error mqtt.*(?:not authori[sz]ed|bad user|credentials|rc=[45]\b|CONNACK [45]\b)(.*)", re.I
        ),
        "the broker refused the node's credentials (check broker.username and broker.password)",
    ),
    (
        re.compile(r"error mqtt:?\s*(.*(?:ECONNREFUSED|refused|Errno 111).*)", re.I),
        "the broker refused the connection from the node ({0}): check broker.host and broker.port",
    ),
    (
        re.compile(r"error mqtt:?\s*(.*(?:EHOSTUNREACH|ETIMEDOUT|ENETUNREACH|timed? ?out).*)", re.I),
        "the node cannot reach the broker ({0})",
    ),
    (
        re.compile(r"^((?:[A-Za-z]+Error|[A-Za-z]+Exception|KeyboardInterrupt)\b.*)"),
        "the node's program stopped: {0}",
    ),
    (re.compile(r"error (.*)"), "the node reported an error: {0}"),
]
# The friendly REPL's banner after the reset means main.py has ended: no birth will come.
_PROGRAM_ENDED = 'Type "help()" for more information.'


def diagnose(console: list[str], waited: float) -> str:
    """Why no birth message came, from what the node printed."""
    for line in reversed(console):
        for pattern, text in _DIAGNOSES:
            match = pattern.search(line)
            if match:
                return text.format(match.group(1).strip() if match.groups() else "")
    last = next((ln for ln in reversed(console) if ln.strip()), None)
    tail = f" (last console line: {last.strip()})" if last else " (the node printed nothing)"
    return f"no birth message within {waited:g} s{tail}"


def copy_bundle(
    board: SerialBoard, bundle: Bundle, config: NodeConfig, step: Callable[[str], None] | None = None
) -> None:
    """Write the bundle, config.json and bundle.json; drop files an older bundle had."""
    previous = board.read_file(ON_DEVICE_MANIFEST)
    if previous:
        try:
            stale = set(json.loads(previous).get("files", {})) - set(bundle.files)
        except ValueError:
            stale = set()
        for name in sorted(stale):
            board.remove(name)
    made: set[str] = set()
    for name in sorted(bundle.files):
        if step:
            step(name)
        folder = name.rpartition("/")[0]
        if folder and folder not in made:
            board.mkdirs(folder)
            made.add(folder)
        board.write_file(name, bundle.path(name).read_bytes())
    ca = config.ca_der()
    if ca is not None:
        board.mkdirs(CA_ON_DEVICE.rpartition("/")[0])
        board.write_file(CA_ON_DEVICE, ca)
    if step:
        step("config.json")
    board.write_file("config.json", config.device_json())
    board.write_file(ON_DEVICE_MANIFEST, json.dumps(bundle.manifest, sort_keys=True).encode())


def expected_hashes(bundle: Bundle, config: NodeConfig) -> dict[str, str]:
    files = dict(bundle.files)
    files["config.json"] = hashlib.sha256(config.device_json()).hexdigest()
    ca = config.ca_der()
    if ca is not None:
        files[CA_ON_DEVICE] = hashlib.sha256(ca).hexdigest()
    return files


def verify(board: SerialBoard, expected: dict[str, str], step: Callable[[str], None] | None = None) -> None:
    """Read each file's sha256 back from the board; raise VerifyError on the first mismatch."""
    for name, want in sorted(expected.items()):
        if step:
            step(name)
        got = board.sha256(name)
        if got is None:
            raise VerifyError(f"verification failed: {name} is missing on the board")
        if got != want:
            raise VerifyError(
                f"verification failed: {name} on the board has sha256 {got[:12]}…, "
                f"expected {want[:12]}… (flash again; if it repeats, the flash is failing)"
            )


_WIPE = """import os
def _rm(p):
 try:
  for e in list(os.ilistdir(p)):
   q = p + '/' + e[0]
   if e[1] == 0x4000:
    _rm(q)
   else:
    os.remove(q)
  os.rmdir(p)
 except OSError:
  try:
   os.remove(p)
  except OSError:
   pass
for p in %r:
 _rm(p)"""


def held_node(board: SerialBoard) -> str | None:
    """The node id in the board's config.json (None: no config, or not one of ours)."""
    raw = board.read_file("config.json")
    try:
        held = json.loads(raw).get("node") if raw else None
    except (ValueError, AttributeError):
        return None
    return held if isinstance(held, str) else None


def check_holder(
    port: str, held: str | None, node: str, replace: bool, flashed_here: Collection[str]
) -> None:
    """Refuse to turn a board that holds another node into `node`, unless asked to."""
    if held is None or held == node:
        return
    if held in flashed_here:
        raise OtherNodeError(
            f"the board on {port} is {held}, flashed earlier in this run: connect {node}'s own "
            "board (one board cannot be two nodes)"
        )
    if not replace:
        raise OtherNodeError(
            f"the board on {port} is node {held}, not {node}: give --replace to flash it as "
            f"{node} ({held}'s queue and state on the board are erased)"
        )


def wait_live(board: SerialBoard, watcher: BirthWatcher, timeout: float, console: list[str]) -> dict | None:
    """Read the console until the birth message arrives or the timeout passes."""
    rebooted = False  # lines before "soft reboot" are the REPL the reset left
    for line in board.console_lines(time.monotonic() + timeout):
        if line:
            console.append(line)
            del console[:-CONSOLE_KEPT]
            rebooted = rebooted or "soft reboot" in line
            if rebooted and ("config error:" in line or line.startswith(_PROGRAM_ENDED)):
                return None  # the node's program ended: waiting longer cannot help
        if watcher.born:
            return watcher.birth
    return watcher.birth


def flash_node(
    port: str,
    config: NodeConfig,
    bundle: Bundle,
    timeout: float = 30.0,
    watch_host: str | None = None,
    watch_port: int | None = None,
    wait: bool = True,
    step: Callable[[str, str], None] | None = None,
    board_timeout: float = 10.0,
    watch_user: str | None = None,
    watch_password: str | None = None,
    replace: bool = True,
    flashed_here: Collection[str] = (),
) -> Outcome:
    """Flash one node and return its outcome. Problems of the node itself end in a failed
    Outcome; problems of the laptop's side (no port, no broker) too, with the reason.

    A board that holds another node is flashed only with `replace` (the rig's boards play
    one node per scenario), never when that node is in `flashed_here` (flashed earlier in
    the same run: the same board met twice)."""
    started = time.monotonic()
    outcome = Outcome(node=config.node, port=port, status="failed", bundle=bundle.version)

    def say(phase: str, detail: str = "") -> None:
        if step:
            step(phase, detail)

    watcher: BirthWatcher | None = None
    board: SerialBoard | None = None
    copying: str | None = None  # the file being copied or verified; "" before the first
    try:
        config.ca_der()  # a CA file that is not there: say so before anything starts
        if wait:
            watcher = BirthWatcher(
                config.broker,
                config.status_topic,
                config.node,
                host=watch_host,
                port=watch_port,
                username=watch_user,
                password=watch_password,
            )
            say("broker", watcher.address)
            watcher.start()
        say("connect", port)
        board = SerialBoard(
            port, timeout=board_timeout, progress=lambda dots: say("connect", f"{port} " + "." * dots)
        )
        board.enter_raw_repl(soft_reset=True)
        outcome.held = held_node(board)
        check_holder(port, outcome.held, config.node, replace, flashed_here)

        def copying_step(phase: str) -> Callable[[str], None]:
            def step(name: str) -> None:
                nonlocal copying
                copying = name
                say(phase, name)

            return step

        outcome.touched = True
        copying = ""
        if outcome.held not in (None, config.node):
            board.exec(_WIPE % (NODE_STATE,))
        copy_bundle(board, bundle, config, step=copying_step("copy"))
        verify(board, expected_hashes(bundle, config), step=copying_step("verify"))
        copying = None
        say("reset", port)
        board.restart_program()
        if watcher is None:
            outcome.status, outcome.reason = "flashed", "verified; not watched for the birth message"
        else:
            say("wait", f"{watcher.topic} ({timeout:g} s)")
            birth = wait_live(board, watcher, timeout, outcome.console)
            if birth is None:
                outcome.reason = diagnose(outcome.console, timeout)
            else:
                outcome.status = "live"
                outcome.fw = birth.get("fw")
                outcome.boot = birth.get("boot")
                outcome.reset = birth.get("reset")
    except BoardLost as err:
        if copying is not None:  # the OS error itself says nothing a technician can act on
            at = f" (at {copying})" if copying else ""
            outcome.reason = f"board lost during the copy{at}: reconnect it and flash again"
        else:
            outcome.reason = str(err)
    except (BoardError, BrokerError, VerifyError, ConfigError, OtherNodeError) as err:
        outcome.reason = str(err)
    finally:
        if board is not None:
            board.close()
        if watcher is not None:
            watcher.stop()
        outcome.seconds = round(time.monotonic() - started, 2)
    return outcome
