"""What a node is: read over its raw REPL without a soft reset (which would erase the
last reset cause), then the node's program is restarted so it goes back to work.

Where the firmware keeps things (firmware/README.md): config.json plus state/config.json
(changes received over `cmd`), state/boot (boot counter), state/counters.json, the offline
queue in queue/ev/ and queue/tm/ (segment files of JSON lines and a `head` file), rtc.json
(RTC memory on the unix port). bundle.json is written by `node flash`. The broker keeps
the node's last status (retained): whether it is online, and the reset cause it reported."""
from __future__ import annotations

import json

from hil.boards.serial_board import BoardError, SerialBoard
from hil.provision.birth import BirthWatcher, BrokerError
from hil.provision.node_config import ConfigError, masked, parse

# Runs on the board: plain MicroPython, prints one JSON object, secrets masked on the board
# already (the console may be logged). The queue depth counts the lines of each queue's
# segment files (named by number) past the oldest undelivered record the `head` file names
# as JSON [segment, line] (firmware/node/queue.py).
_PROBE = r"""
import gc, json, os, sys
def _rd(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
def _js(p):
    t = _rd(p)
    try:
        return json.loads(t) if t else None
    except ValueError:
        return None
def _depth(d):
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    h = _js(d + '/head') or [0, 0]
    seg, line = h[0], h[1]
    n = 0
    for name in names:
        if not name.isdigit() or int(name) < seg:
            continue
        with open(d + '/' + name, 'rb') as f:
            c = f.read().count(b'\n')
        n += c - line if int(name) == seg else c
    return max(n, 0)
def _reset():
    try:
        import machine
        c = machine.reset_cause()
    except (ImportError, AttributeError):
        return None
    for k in ('PWRON_RESET', 'HARD_RESET', 'WDT_RESET', 'DEEPSLEEP_RESET', 'SOFT_RESET'):
        if getattr(machine, k, None) == c:
            return {'PWRON_RESET': 'power', 'HARD_RESET': 'hard', 'WDT_RESET': 'watchdog',
                    'DEEPSLEEP_RESET': 'deepsleep', 'SOFT_RESET': 'soft'}[k]
    return str(c)
def _mask(d):
    if isinstance(d, dict):
        for k in d:
            if k == 'password' and d[k]:
                d[k] = '********'
            else:
                _mask(d[k])
    return d
gc.collect()
_b = _js('bundle.json') or {}
_b.pop('files', None)
print(json.dumps({'mem_free': gc.mem_free(), 'mem_alloc': gc.mem_alloc(),
  'platform': sys.platform, 'micropython': sys.version,
  'bundle': _b, 'config': _mask(_js('config.json')),
  'config_changes': _mask(_js('state/config.json')),
  'boot': (_rd('state/boot') or '').strip() or None, 'counters': _js('state/counters.json'),
  'reset_cause': _reset(),
  'queue': {'events': _depth('queue/ev'), 'telemetry': _depth('queue/tm')}}))
"""


def _retained_status(config: dict, password: str | None, timeout: float) -> tuple[dict | None, str]:
    """The status the broker keeps for the node (its last birth or will), and a note when
    it could not be read. The board masks its broker password, so an authenticated broker
    needs the password from the node's config file on the laptop."""
    try:
        node_config = parse(config, "config.json on the board")
    except ConfigError as err:
        return None, str(err)
    broker = node_config.broker
    if broker.password and password is None:
        return None, "not read: the broker needs the password (give --node NODE_CONFIG)"
    broker = broker.model_copy(update={"password": password if broker.password else None})
    watcher = BirthWatcher(broker, node_config.status_topic, node_config.node, retained=True)
    try:
        watcher.start(timeout)
    except BrokerError as err:
        return None, str(err)
    try:
        status = watcher.wait(timeout)
    finally:
        watcher.stop()
    return status, "" if status else "the broker holds no status for this node"


def read_info(port: str, timeout: float = 10.0, restart: bool = True,
              broker_password: str | None = None, broker_timeout: float = 3.0) -> dict:
    """Everything `node info` shows, secrets masked. The node's program is interrupted
    while the board is read and the broker asked for the node's retained status (a restart
    first would replace it), then restarted."""
    with SerialBoard(port, timeout=timeout) as board:
        board.enter_raw_repl(soft_reset=False)
        text = board.exec(_PROBE).strip()
        try:
            raw = json.loads(text.splitlines()[-1])
        except (ValueError, IndexError):
            raise BoardError(f"the board on {port} gave an unreadable answer: {text[:80]!r}") from None
        config = raw.get("config") or {}
        if raw.get("config_changes"):
            config = {**config, **raw["config_changes"]}
        status, status_note = _retained_status(config, broker_password, broker_timeout)
        if restart:
            board.restart_program()
    bundle = raw.get("bundle") or {}
    boot = raw.get("boot")
    status = status or {}
    return {
        "port": port,
        "node": config.get("node"),
        "firmware": status.get("fw") or bundle.get("fw"),
        "bundle": bundle.get("version"),
        "built": bundle.get("built"),
        "micropython": raw.get("micropython"),
        "platform": raw.get("platform"),
        "mem_free": raw.get("mem_free"),
        "mem_alloc": raw.get("mem_alloc"),
        # machine.reset_cause() on a board; the unix port has none, and the node's birth
        # message says what its HAL saw at boot.
        "reset_cause": raw.get("reset_cause") or status.get("reset"),
        "boot": int(boot) if boot and str(boot).isdigit() else boot,
        "broker_status": status.get("state"),
        "broker_note": status_note,
        "queue": raw.get("queue"),
        "counters": raw.get("counters"),
        "config": masked(config),
    }
