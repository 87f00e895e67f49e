"""Virtual nodes: the real firmware (compiled bundle) under the MicroPython unix port with
the sim HAL, each in a flash folder of its own, supervised the way a board's reset
circuitry would: a node that goes to deep sleep exits and is started again after the
sleep; a reboot command restarts it at once; power loss kills it and wipes RTC memory.

firmware/README.md gives the contracts this module implements on the harness side.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.sim_build import NODE_MICROPYPATH, build_bundle, default_bundle_dir, install, node_argv
from protocols.catalog import KINDS

SLEEP_EXIT = 75
REBOOT_EXIT = 76
POWER_CUT_EXIT = 77  # the node cut its own power at a checkpoint the harness named
CONFIG_EXIT = 2
MAX_CRASHES = 5
# Heap of a virtual node (-X heapsize). tests/firmware/test_heap.py holds duty-cycled
# nodes of every kind to 64 KB (a queue replay and a wake of commands included) and
# always-on nodes to 96 KB; the fleet gets more, for what those tests do not cover at the
# limit (TLS, the HIL console, hours of fragmentation in an always-on node).
# The unix port is 64-bit: every object pointer is twice the size it is on an ESP32 or
# RP2040, so the same application needs more heap here than on a board.
DEFAULT_HEAP = "128k"
_PUBLISHED = re.compile(r" published tm=(\d+) ev=(\d+) queued=(\d+) dropped=(\d+)")
_AWAKE = re.compile(r" awake (\d+) ms heap_peak=(\d+)")


def write_json_atomic(path: Path, obj: Any) -> None:
    """tmp + rename, so the node never reads half a file (contract 3)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


class _Watchdogs:
    """The virtual nodes' watchdogs, one thread for all of them. A node feeds its
    watchdog by rewriting `wdt` in its flash folder (the sim HAL, firmware/README.md
    contract 2), which holds the timeout in ms; a running node whose `wdt` is older than
    that is hung, and is reset as a board's watchdog would reset it."""

    PERIOD_S = 0.25

    def __init__(self) -> None:
        self._nodes: set[SimNode] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, node: SimNode) -> None:
        with self._lock:
            self._nodes.add(node)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-watchdogs", daemon=True)
                self._thread.start()

    def unwatch(self, node: SimNode) -> None:
        with self._lock:
            self._nodes.discard(node)

    def _run(self) -> None:
        while True:
            time.sleep(self.PERIOD_S)
            with self._lock:
                nodes = list(self._nodes)
            for node in nodes:
                node._check_watchdog()


_WATCHDOGS = _Watchdogs()


@dataclass
class NodeStats:
    """What a node's console said, counted by its supervisor."""

    starts: int = 0
    wakes: int = 0
    published: int = 0
    events: int = 0
    dropped: int = 0
    errors: int = 0
    crashes: int = 0
    awake_ms: list[int] = field(default_factory=list)
    heap_peak: int = 0
    power_cuts: int = 0
    watchdog_resets: int = 0
    exit_code: int | None = None


class SimNode:
    """One virtual node. `config` is the node's config.json (contract 1)."""

    def __init__(
        self,
        flash_dir: Path | str,
        config: dict,
        bundle: Path | None = None,
        heap: str = DEFAULT_HEAP,
        console_lines: int = 200,
        echo: bool = False,
    ) -> None:
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config)
        self.node_id = self.config["node"]
        self.bundle = Path(bundle) if bundle else build_bundle(default_bundle_dir())
        self.heap = heap
        self.echo = echo
        self.console: deque[str] = deque(maxlen=console_lines)
        self.stats = NodeStats()
        self._control: dict = {"stimuli": {}, "net": "up"}
        self._proc: subprocess.Popen[bytes] | None = None
        self._wdt_fired = False
        self._wdt_timeout_ms = 0  # read from `wdt` once per process: it never changes
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.sleeping = False
        (self.flash_dir / "config.json").write_text(json.dumps(self.config))
        self._write_control()

    # -- lifecycle -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the node is supervised: awake or in deep sleep."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SimNode:
        if self.running:
            return self
        install(self.bundle, self.flash_dir)  # once: every wake runs the same links
        self._stop.clear()
        self._thread = threading.Thread(target=self._supervise, name=f"sim-{self.node_id}", daemon=True)
        self._thread.start()
        _WATCHDOGS.watch(self)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising and kill the process (its flash stays as it is)."""
        self._stop.set()
        self._wake.set()
        _WATCHDOGS.unwatch(self)
        self._kill()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def power_loss(self) -> None:
        """SIGKILL at any moment, RTC memory lost, then power back on (a reset)."""
        self.stop()
        try:
            (self.flash_dir / "rtc.json").unlink()
        except FileNotFoundError:
            pass
        self.start()

    def wake(self) -> None:
        """Pin wake of a sleeping duty-cycled node: it starts now with wake reason pin."""
        self._wake.set()

    # -- stimuli and faults (contract 3) ---------------------------------------------
    def set_stimulus(self, name: str, value: Any) -> None:
        with self._lock:
            self._control["stimuli"][name] = value
            self._write_control()

    def clear_stimulus(self, name: str) -> None:
        with self._lock:
            self._control["stimuli"].pop(name, None)
            self._write_control()

    def cut_network(self, down: bool) -> None:
        with self._lock:
            self._control["net"] = "down" if down else "up"
            self._write_control()

    def hang_at(self, checkpoint: str | None) -> None:
        """Make the node hang the next time it reaches the named checkpoint (nothing runs,
        nothing feeds its watchdog). One-shot: cleared when the watchdog resets it."""
        self._set_fault("hang", checkpoint)

    def cut_power_at(self, checkpoint: str | None) -> None:
        """Cut the power the next time the node reaches the named checkpoint (the sim
        HAL's checkpoint(), e.g. "commands": commands received and acked, not yet run).
        One-shot: the supervisor powers the node back on and clears it."""
        self._set_fault("cut", checkpoint)

    def _set_fault(self, key: str, checkpoint: str | None) -> None:
        """A fault at a named checkpoint (the sim HAL's checkpoint()), or none."""
        with self._lock:
            if checkpoint is None:
                self._control.pop(key, None)
            else:
                self._control[key] = checkpoint
            self._write_control()

    def _write_control(self) -> None:
        write_json_atomic(self.flash_dir / "control.json", self._control)

    # -- what the node did -----------------------------------------------------------
    def taken(self) -> list[tuple[int, int]]:
        """(boot, seq) of every reading and event the node created (the sim HAL's log)."""
        path = self.flash_dir / "taken.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.append((int(parts[0]), int(parts[1])))
        return out

    def console_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self.console)[-lines:])

    def wait_for_console(self, pattern: str, timeout: float = 30.0, after: int = 0) -> str:
        """Wait until a console line contains `pattern` (a hang guard, not a timing test)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.console)[after:]:
                if pattern in line:
                    return line
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.node_id}: no console line with {pattern!r}; last lines:\n" + self.console_tail()
        )

    # -- supervision -----------------------------------------------------------------
    def _spawn(self, wake: str | None) -> subprocess.Popen[bytes]:
        env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
        env.pop("URBANSENSE_WAKE", None)
        if wake:
            env["URBANSENSE_WAKE"] = wake
        # A heartbeat from before a sleep or a reset would look like a hang.
        (self.flash_dir / "wdt").unlink(missing_ok=True)
        self._wdt_fired = False
        self._wdt_timeout_ms = 0
        return subprocess.Popen(
            node_argv(self.heap),
            cwd=self.flash_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # A board does not get the laptop terminal's Ctrl-C: the supervisor stops nodes.
            start_new_session=True,
        )

    def _check_watchdog(self) -> None:
        """Called by the watchdog thread: reset the node if it stopped feeding."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._wdt_fired:
            return
        path = self.flash_dir / "wdt"
        try:
            fed = path.stat().st_mtime
            if not self._wdt_timeout_ms:
                self._wdt_timeout_ms = int(path.read_text() or 0)
        except (OSError, ValueError):
            return  # not started, or being rewritten this instant
        timeout_ms = self._wdt_timeout_ms
        if timeout_ms and time.time() - fed > timeout_ms / 1000:
            self._wdt_fired = True
            (self.flash_dir / "wdt.reset").write_text("")
            self.stats.watchdog_resets += 1
            self._on_line(f"{self.node_id} supervisor: watchdog reset (not fed for {timeout_ms} ms)")
            proc.send_signal(signal.SIGKILL)

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def _supervise(self) -> None:
        wake: str | None = None
        while not self._stop.is_set():
            self.sleeping = False
            # A pin wake that comes while the node is still awake (or on its way to sleep)
            # ends the coming sleep at once, as a level-triggered wake pin does.
            self._wake.clear()
            self._proc = proc = self._spawn(wake)
            self.stats.starts += 1
            assert proc.stdout is not None
            for raw in proc.stdout:
                self._on_line(raw.decode(errors="replace").rstrip())
            code = proc.wait()
            if self._stop.is_set():
                return  # killed by stop(): not the node's own exit
            self.stats.exit_code = code
            if self._wdt_fired:
                wake = None  # the watchdog reset it: it starts again at once
                self.hang_at(None)
            elif code == SLEEP_EXIT:
                self.sleeping = True
                self.stats.wakes += 1
                sleep_ms = self._sleep_ms()
                woken = self._wake.wait(sleep_ms / 1000.0)
                wake = "pin" if woken and not self._stop.is_set() else None
            elif code == REBOOT_EXIT:
                wake = None
            elif code == POWER_CUT_EXIT:
                self.stats.power_cuts += 1
                self.cut_power_at(None)
                wake = None
            elif code != CONFIG_EXIT and self.stats.crashes < MAX_CRASHES:
                # A crash: a board's fatal handler (or its watchdog) resets it.
                self.stats.crashes += 1
                self._on_line(f"{self.node_id} supervisor: crashed (exit {code}), reset")
                wake = None
            else:
                # Bad config, or a crash loop: a real board would sit in its REPL; the
                # supervisor stops and keeps the console for the harness.
                self._on_line(f"{self.node_id} supervisor: exited with code {code}")
                return

    def _sleep_ms(self) -> int:
        try:
            return int(json.loads((self.flash_dir / "rtc.json").read_text())["sleep_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            return 1000

    def _on_line(self, line: str) -> None:
        self.console.append(line)
        # The whole console, kept in the flash folder for whoever looks at the node later.
        with open(self.flash_dir / "console.log", "a") as log:
            log.write(line + "\n")
        if self.echo:
            print(line, flush=True)
        m = _PUBLISHED.search(line)
        if m:
            self.stats.published += int(m.group(1))
            self.stats.events += int(m.group(2))
            self.stats.dropped = int(m.group(4))
            return
        m = _AWAKE.search(line)
        if m:
            self.stats.awake_ms.append(int(m.group(1)))
            self.stats.heap_peak = max(self.stats.heap_peak, int(m.group(2)))
        elif " error " in line:
            self.stats.errors += 1


def node_config(
    node_id: str,
    kind: str,
    district: str,
    zone: str,
    broker_host: str,
    broker_port: int,
    interval_s: float,
    schedule: str | None = None,
    seed: int | None = None,
    servers: list[str] | None = None,
    **extra: Any,
) -> dict:
    """A config.json for a virtual node (contract 1). Air-quality nodes are mains-powered
    and always on; the others run on batteries and are duty-cycled (DESIGN). `servers`:
    the "host:port" of every member of a clustered broker tier, which the node fails over
    between; host and port are then the first member's."""
    cfg = {
        "node": node_id,
        "district": district,
        "zone": zone,
        "kind": kind,
        "platform": "sim",
        "schedule": schedule or ("always-on" if kind == "air" else "duty-cycled"),
        "interval_s": interval_s,
        "broker": {
            "host": broker_host,
            "port": broker_port,
            "username": None,
            "password": None,
            "tls": False,
            "ca": None,
            **({"servers": list(servers)} if servers else {}),
        },
        "thresholds": {},
        "calibration": {},
        "queue_max": 500,
        "hil": False,
    }
    if seed is not None:
        cfg["seed"] = seed
    cfg.update(extra)
    return cfg


def fleet_node_id(district: str, zone: str, kind: str, index: int) -> str:
    """A virtual node's id, e.g. xuhui-caohejing-p0001: the broker keys sessions on it,
    so fleets of different zones on one broker must not share ids. At most 25
    characters (a slug is at most 32)."""
    return f"{district[:8].strip('-')}-{zone[:10].strip('-')}-{kind[0]}{index:04d}"


class Fleet:
    """N virtual nodes of the given kinds, round robin, started spread over one interval so
    that they do not all wake in the same instant."""

    def __init__(
        self,
        broker_host: str,
        broker_port: int,
        district: str,
        zone: str,
        kinds: Iterable[str],
        count: int,
        interval_s: float,
        seed: int,
        base_dir: Path | str,
        heap: str = DEFAULT_HEAP,
        servers: list[str] | None = None,
    ) -> None:
        kinds = list(kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"unknown kind(s) {unknown or kinds}: choose from {', '.join(KINDS)}")
        self.base_dir = Path(base_dir)
        self.interval_s = interval_s
        self.seed = seed
        bundle = build_bundle(default_bundle_dir())
        self.nodes: list[SimNode] = []
        for i in range(count):
            kind = kinds[i % len(kinds)]
            node_id = fleet_node_id(district, zone, kind, i + 1)
            cfg = node_config(
                node_id,
                kind,
                district,
                zone,
                broker_host,
                broker_port,
                interval_s,
                seed=seed * 100003 + i,
                servers=servers,
            )
            self.nodes.append(SimNode(self.base_dir / node_id, cfg, bundle=bundle, heap=heap))

    def start(self, progress=None, spread_s: float | None = None) -> None:
        """Start every node, the starts spread over spread_s seconds (default: one interval,
        at most 10 s) so that duty-cycled nodes do not wake in bursts."""
        rng = random.Random(self.seed)
        if spread_s is None:
            spread_s = min(self.interval_s, 10.0)
        spread = spread_s / max(1, len(self.nodes))
        for node in self.nodes:
            node.start()
            if progress is not None:
                progress()
            time.sleep(spread * rng.uniform(0.5, 1.5))

    def stop(self) -> None:
        for node in self.nodes:
            node._stop.set()
            node._wake.set()
        for node in self.nodes:
            node.stop()
