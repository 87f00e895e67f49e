"""What a node is: read over its raw REPL without a soft reset (which would erase the
last reset cause), then the node's program is restarted so it goes back to work.

Where the firmware keeps things (firmware/README.md): config.json plus state/config.json
(changes received over `cmd`), state/boot (boot counter), state/counters.json, the offline
queue in queue/ev/ and queue/tm/ (segment files of JSON lines and a `head` file), rtc.json
(RTC memory on the unix port). bundle.json is written by `node flash`."""
from __future__ import annotations

import json

from hil.boards.serial_board import BoardError, SerialBoard
from hil.provision.node_config import masked

# Runs on the board: plain MicroPython, prints one JSON object, secrets masked on the board
# already (the console may be logged). The queue depth counts the
# lines of each queue's segment files past the read position the `head` file names
# ("<segment> <line>"); a head it cannot read counts from the start.
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
    seg, line = -1, 0
    h = _rd(d + '/head')
    if h:
        try:
            p = h.split()
            seg, line = int(p[0]), int(p[1]) if len(p) > 1 else 0
        except ValueError:
            pass
    n = 0
    for name in names:
        if name == 'head' or not name.split('.')[0].isdigit():
            continue
        num = int(name.split('.')[0])
        if num < seg:
            continue
        with open(d + '/' + name) as f:
            c = 0
            for ln in f:
                if ln.strip():
                    c += 1
        n += c - line if num == seg else c
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
  'rtc': _js('rtc.json'), 'reset_cause': _reset(),
  'queue': {'events': _depth('queue/ev'), 'telemetry': _depth('queue/tm')}}))
"""


def _reset_cause(raw: dict) -> str | None:
    """machine.reset_cause() on a board; on the unix port, the rule of firmware/README.md
    contract 2 applied to rtc.json (present with sleep_ms: woke from deep sleep)."""
    if raw.get("reset_cause"):
        return raw["reset_cause"]
    rtc = raw.get("rtc")
    if rtc is None:
        return "power"
    return "deepsleep" if isinstance(rtc, dict) and rtc.get("sleep_ms") else "hard"


def read_info(port: str, timeout: float = 10.0, restart: bool = True) -> dict:
    """Everything `node info` shows, secrets masked."""
    with SerialBoard(port, timeout=timeout) as board:
        board.enter_raw_repl(soft_reset=False)
        text = board.exec(_PROBE).strip()
        if restart:
            board.restart_program()
    try:
        raw = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        raise BoardError(f"the board on {port} gave an unreadable answer: {text[:80]!r}") from None
    config = raw.get("config") or {}
    if raw.get("config_changes"):
        config = {**config, **raw["config_changes"]}
    bundle = raw.get("bundle") or {}
    boot = raw.get("boot")
    return {
        "port": port,
        "node": config.get("node"),
        "firmware": bundle.get("fw"),
        "bundle": bundle.get("version"),
        "built": bundle.get("built"),
        "micropython": raw.get("micropython"),
        "platform": raw.get("platform"),
        "mem_free": raw.get("mem_free"),
        "mem_alloc": raw.get("mem_alloc"),
        "reset_cause": _reset_cause(raw),
        "boot": int(boot) if boot and str(boot).isdigit() else boot,
        "queue": raw.get("queue"),
        "counters": raw.get("counters"),
        "config": masked(config),
    }
