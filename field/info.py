"""What a node is: read over its raw REPL without a soft reset (which would erase the
last reset cause), then the node's program is restarted so it goes back to work. A
duty-cycled node is mostly caught in the break-in window at the start of a wake
(firmware/main.py), before it has touched its boot counter or RTC memory: its restart then
continues the same boot, as the wake would have. A node stopped in the middle of its work
starts a new boot (reset cause "soft" on a board and on the sim).

Where the firmware keeps things (firmware/README.md): config.json plus state/config.json
(changes received over `cmd`), state/boot (boot counter), state/counters.json, the offline
queue in queue/ev/ and queue/tm/ (numbered segment files, one record a line, and a `head`
file holding JSON [segment, line], the oldest record not yet delivered: node/queue.py).
bundle.json is written by `node flash`. The broker keeps the node's last status (retained):
whether it is online, and the reset cause it reported.

The board is asked many small questions rather than one big one: the interrupted node's
modules fill most of a small heap, and compiling a long command there fails for want of
one contiguous block."""

from __future__ import annotations

import json
from collections.abc import Callable

from field.birth import BirthWatcher, BrokerError
from field.node_config import BrokerConfig, NodeConfig, masked
from field.serial_board import BoardError, SerialBoard

QUEUES = {"events": "queue/ev", "telemetry": "queue/tm"}
RETAINED_WAIT_S = 1.5

# The interrupted program's asyncio tasks still hold its objects: drop them first. The free
# memory shown is the heap left beside the loaded modules, without their running state.
_RELEASE = """import gc
try:
 import asyncio
 asyncio.new_event_loop()
except (ImportError, AttributeError):
 pass
gc.collect()"""
_MEMORY = "(gc.mem_free(), gc.mem_alloc())"
# Who the node is and where its broker is (never the password), in as small a command as
# possible: it runs first, beside the stopped program, before anything could reset the board.
_IDENTITY = """import json
c=json.load(open('config.json'))
b=c['broker']
print(json.dumps([c['node'],c['district'],c['zone'],b['host'],b.get('port'),b.get('username'),bool(b.get('password')),bool(b.get('tls'))]))"""
# Then its modules go too, so that the questions after it have room: the program is started
# afresh (a new interpreter on a virtual board, a soft reset on a real one) afterwards.
_UNLOAD = """import sys
for _k in list(sys.modules):
 del sys.modules[_k]
gc.collect()"""

_RESET_NAMES = {
    "PWRON_RESET": "power",
    "HARD_RESET": "hard",
    "WDT_RESET": "watchdog",
    "DEEPSLEEP_RESET": "deepsleep",
    "SOFT_RESET": "soft",
}
# The names of machine's reset constants equal to machine.reset_cause(); [] on the unix port.
_RESET_EXPR = (
    "[k for k in %r if hasattr(machine, 'reset_cause') and getattr(machine, k, None) "
    "== machine.reset_cause()]" % (list(_RESET_NAMES),)
)

# A JSON file with every "password" value masked on the board: the console may be logged.
_MASKED_JSON = """import json
def _m(d):
 if isinstance(d, dict):
  for k in d:
   if k == 'password' and d[k]:
    d[k] = '********'
   else:
    _m(d[k])
try:
 with open(%r) as f:
  d = json.load(f)
 _m(d)
 print(json.dumps(d))
except (OSError, ValueError):
 print('null')"""

_COUNT_LINES = """c = 0
with open(%r, 'rb') as f:
 for _ in f:
  c += 1
print(c)"""


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _json_from_board(board: SerialBoard, path: str) -> object:
    try:
        return json.loads(_last_line(board.exec(_MASKED_JSON % path)))
    except ValueError:
        return None


def _queue_depth(board: SerialBoard, folder: str) -> int:
    try:
        names = [e.name for e in board.transport.fs_listdir(folder)]
    except OSError:
        return 0
    head_raw = board.read_file(folder + "/head")
    try:
        head_seg, head_line = json.loads(head_raw) if head_raw else (0, 0)
    except (ValueError, TypeError):
        head_seg, head_line = 0, 0
    depth = 0
    for name in names:
        if not name.isdigit() or int(name) < head_seg:
            continue
        lines = int(_last_line(board.exec(_COUNT_LINES % f"{folder}/{name}")) or 0)
        depth += lines - head_line if int(name) == head_seg else lines
    return max(depth, 0)


def _config(board: SerialBoard) -> dict:
    """config.json with the changes received over `cmd` merged in (secrets masked)."""
    config = _json_from_board(board, "config.json")
    changes = _json_from_board(board, "state/config.json")
    config = config if isinstance(config, dict) else {}
    return {**config, **changes} if isinstance(changes, dict) else config


def _read_board(board: SerialBoard) -> dict:
    board.exec("import machine, sys")
    platform, version = board.eval("(sys.platform, sys.version)")
    names = board.eval(_RESET_EXPR)
    reset = _RESET_NAMES.get(names[0]) if names else None
    boot = (board.read_file("state/boot") or b"").decode(errors="replace").strip()
    found = {
        "platform": platform,
        "micropython": version,
        "reset_cause": reset,
        "boot": int(boot) if boot.isdigit() else None,
        "counters": _json_from_board(board, "state/counters.json"),
        "queue": {name: _queue_depth(board, folder) for name, folder in QUEUES.items()},
    }
    manifest = board.read_file("bundle.json")  # the largest file: last
    try:
        bundle = json.loads(manifest) if manifest else {}
    except ValueError:
        bundle = {}
    found["bundle"] = {k: v for k, v in bundle.items() if k != "files"}
    return found


# When the stopped program leaves too little heap even to free it, a fresh interpreter answers.
_AFTER_RESET = "(after a soft reset: the stopped program left too little heap)"


def _make_room(board: SerialBoard) -> tuple[tuple[int, int], bool]:
    """Free the stopped program's heap; return (free, allocated) as it was with its modules
    loaded, and whether a soft reset was needed (when even that did not fit)."""
    try:
        board.exec(_RELEASE)
        memory = board.eval(_MEMORY)
        board.exec(_UNLOAD)
        return memory, False  # type: ignore[return-value]
    except BoardError as err:
        if "MemoryError" not in str(err):
            raise
    board.enter_raw_repl(soft_reset=True)
    board.exec("import gc")
    return board.eval(_MEMORY), True  # type: ignore[return-value]


def _identity(board: SerialBoard) -> tuple[str, str, BrokerConfig, bool] | None:
    """(node, status topic, broker without password, whether it has one) from the board."""
    try:
        node, district, zone, host, port, user, has_password, tls = json.loads(
            _last_line(board.exec(_RELEASE + "\n" + _IDENTITY))
        )
        broker = BrokerConfig(host=host, port=port, username=user, tls=tls)
    except (BoardError, ValueError, TypeError):
        return None  # no config, or no room even for this: the status is not read
    return node, f"city/v1/{district}/{zone}/{node}/status", broker, has_password


def _retained_status(
    identity: tuple[str, str, BrokerConfig, bool] | None,
    laptop: NodeConfig | None,
    user: str | None,
    password: str | None,
    timeout: float,
) -> tuple[dict | None, str]:
    """The status the broker keeps for the node (its last birth or will), and a note when
    it could not be read. The board masks its broker password and names its CA by its path
    in flash, so an authenticated or TLS broker needs the node's config file from the laptop
    (or a reading account: `user`)."""
    if laptop is not None:
        node, topic, broker = laptop.node, laptop.status_topic, laptop.broker
    elif identity is None:
        return None, "not read: the board's config.json could not be read"
    else:
        node, topic, broker, has_password = identity
        if not user and (has_password or broker.tls):
            return None, "not read: give --node NODE_CONFIG (the board masks its broker password)"
    watcher = BirthWatcher(broker, topic, node, retained=True, username=user, password=password)
    try:
        watcher.start(timeout)
    except BrokerError as err:
        return None, str(err)
    try:
        # The broker sends retained messages right after the subscription is confirmed.
        status = watcher.wait(RETAINED_WAIT_S)
    finally:
        watcher.stop()
    return status, "" if status else "the broker holds no status for this node"


def read_info(
    port: str,
    timeout: float = 10.0,
    restart: bool = True,
    laptop_config: NodeConfig | None = None,
    watch_user: str | None = None,
    watch_password: str | None = None,
    broker_timeout: float = 3.0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Everything `node info` shows, secrets masked. The node's program stays interrupted
    while the board is read and the broker asked for the node's retained status (a restart
    first would replace it), then it is restarted."""
    with SerialBoard(port, timeout=timeout, progress=progress) as board:
        board.enter_raw_repl(soft_reset=False)
        was_reset = board.was_reset
        # The retained status first: a soft reset below would replace it with the node's will.
        identity = None if laptop_config else _identity(board)
        status, status_note = _retained_status(
            identity, laptop_config, watch_user, watch_password, broker_timeout
        )
        (mem_free, mem_alloc), reset = _make_room(board)
        try:
            config, raw = _config(board), _read_board(board)
        except BoardError as err:
            if reset or "MemoryError" not in str(err):
                raise
            # The heap the program left is too broken up even once freed: start afresh.
            board.enter_raw_repl(soft_reset=True)
            reset = True
            config, raw = _config(board), _read_board(board)
        if reset or was_reset:  # machine.reset_cause() now names a reset made here
            raw["reset_cause"] = None
        if restart:
            board.restart_program()
    mem_note = _AFTER_RESET if reset else ""
    status = status or {}
    bundle = raw["bundle"]
    # Reached through a reset made here (a sleeping node, RTS line): the cause before it is gone.
    cause = "hard" if was_reset else raw["reset_cause"] or status.get("reset")
    return {
        "port": port,
        "node": config.get("node"),
        "firmware": status.get("fw") or bundle.get("fw"),
        "bundle": bundle.get("version"),
        "built": bundle.get("built"),
        "micropython": raw["micropython"],
        "platform": raw["platform"],
        "mem_free": mem_free,
        "mem_alloc": mem_alloc,
        "mem_note": mem_note,
        # machine.reset_cause() on a board; the unix port has none, and the node's birth
        # message says what its HAL saw at boot.
        "reset_cause": cause,
        "reset_here": was_reset,
        "boot": raw["boot"],
        "broker_status": status.get("state"),
        "broker_note": status_note,
        "queue": raw["queue"],
        # No file yet: the node has counted nothing (it writes the file on its first count).
        "counters": raw["counters"] if isinstance(raw["counters"], dict) else {},
        "config": masked(config),
    }
