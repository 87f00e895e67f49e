"""City in a box: a whole small "1+16+X" city on this machine.

Two districts of two zones each; one edge aggregator per zone; sim nodes of all four kinds
running the real firmware; a private Mosquitto and InfluxDB whose state lives in a folder
the user can find (default ./var/demo). Part way through, a leak, an opened manhole cover
and a gas alarm are staged and their end-to-end latencies measured. At the end the demo
reports what landed in InfluxDB. Everything it started is stopped, also on Ctrl-C."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.dispatch import places, responsibility_toml
from demo.landed import Landed, city_landing, district_landing
from demo.view import CityView, StagedAlarm, gather
from hil.node_handles import apply_stimulus
from hil.stack.city_stack import CityStack
from hil.stack.dispatch import Dispatch
from hil.stack.edges import EdgeSite
from hil.stack.probes import EventPointProbe, Moment
from protocols.catalog import KINDS

DISTRICTS: dict[str, tuple[str, ...]] = {
    "xuhui": ("caohejing", "xujiahui"),
    "minhang": ("xinzhuang", "zizhu"),
}
MARKER = ".urbansense-demo"  # marks a folder as the demo's own, safe to clean
ONLINE_WAIT_S = 45.0
DRAIN_WAIT_S = 15.0
GIVE_UP_S = 15.0  # a staged alarm not seen by then is reported as missing


class DemoError(RuntimeError):
    """Something the user can fix (a folder that is not the demo's ...): one line."""


@dataclass
class DemoOptions:
    state_dir: Path
    duration_s: float = 60.0
    nodes_per_zone: int = 8
    interval_s: float = 5.0
    seed: int = 1
    # "mosquitto" (the default) or "nats": a 3-member NATS cluster, the district tier.
    broker: str = "mosquitto"


@dataclass
class DemoReport:
    state_dir: Path
    ran_s: float
    interrupted: bool
    nodes: int
    nodes_online: int
    messages: int
    staged: list[StagedAlarm]
    districts: list[Landed]
    city: list[Landed]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "ran_s": round(self.ran_s, 1),
            "interrupted": self.interrupted,
            "nodes": self.nodes,
            "nodes_online": self.nodes_online,
            "messages": self.messages,
            "staged_alarms": [
                {
                    "alarm": s.label,
                    "node": s.node,
                    "district": s.district,
                    "zone": s.zone,
                    "event": s.event,
                    "alarms_topic_ms": None if s.topic_ms is None else round(s.topic_ms, 1),
                    "influxdb_ms": None if s.influx_ms is None else round(s.influx_ms, 1),
                    "notified_ms": None if s.notified_ms is None else round(s.notified_ms, 1),
                    "notified_to": s.notified_to,
                }
                for s in self.staged
            ],
            "landed": [ln.__dict__ for ln in self.districts + self.city],
            "problems": self.problems,
            "notes": self.notes,
        }


def sites() -> list[EdgeSite]:
    return [EdgeSite(d, z) for d, zones in DISTRICTS.items() for z in zones]


def prepare_state_dir(path: Path) -> Path:
    """Clean the previous run's state so a second run starts fresh without manual steps;
    refuse to wipe a folder the demo did not make."""
    path = path.resolve()
    if path.exists():
        if not path.is_dir():
            raise DemoError(f"{path} is a file, not a folder for the demo's state")
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise DemoError(f"{path} is not empty and was not made by the demo; choose another --state-dir")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("state of `urbansense demo`; removed by its next run\n")
    return path


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Hold a lock beside the state folder for the whole run: a second demo on the same
    folder would otherwise wipe the state of the servers the first one is running."""
    path = state_dir.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoError(
                f"another demo is running on {path}; wait for it or choose another --state-dir"
            ) from None
        yield


@contextlib.contextmanager
def interrupts_between_steps(request: Callable[[], None]) -> Iterator[None]:
    """Within this block Ctrl-C and SIGTERM only call `request`, and the loops that run the
    city stop at their next pause. A KeyboardInterrupt raised wherever the main thread
    happens to be can land inside the observer's lock (a Condition: its acquire and release
    run Python code) and leave it held; the observer's network thread then waits for it
    forever, and so does stopping the observer. `request` must take no lock either: it runs
    in the main thread, between any two of its steps."""

    def on_signal(signum: int, frame: object) -> None:
        request()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class CityDemo:
    def __init__(self, options: DemoOptions, view: CityView) -> None:
        self.opts = options
        self.view = view
        self.sites = sites()
        self.stack: CityStack | None = None
        self.fleets: dict[EdgeSite, Any] = {}
        self.staged: list[StagedAlarm] = []
        self.probes: list[tuple[StagedAlarm, EventPointProbe]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.dispatch: Dispatch | None = None  # Alertmanager and the institutions' webhook
        self.peak_online = 0  # most nodes online at once while the city ran
        self.interrupted = False  # Ctrl-C or SIGTERM while the city ran

    # -- the whole run
    def run(self) -> DemoReport:
        with exclusive(self.opts.state_dir):
            return self._run()

    def _run(self) -> DemoReport:
        state_dir = prepare_state_dir(self.opts.state_dir)
        self.view.say(f"state folder: {state_dir} (kept after the run; the next run cleans it)")
        self.dispatch = dispatch = Dispatch(state_dir / "alertmanager", self.view.say)
        extra = dispatch.edge_extra(
            lambda: self.stack,
            lambda: (
                responsibility_toml(list(DISTRICTS), dispatch.webhook, dispatch.alertmanager.url),
                ".toml",
            ),
            self._places,
        )
        self.stack = CityStack(
            state_dir, self.sites, progress=self.view.say, edge_extra=extra, broker=self.opts.broker
        )
        began = time.monotonic()
        with self.stack:
            self._start_fleets(state_dir)
            try:
                with interrupts_between_steps(self._interrupt):
                    self._wait_online()
                    self._stage_plan()
                    self._run_city()
            except KeyboardInterrupt:
                self._interrupt()
            if self.interrupted:
                self.view.say("interrupted: collecting what landed, then stopping everything")
            ran_s = time.monotonic() - began
            self.view.say("stopping the nodes; letting the edges forward what they hold")
            for fleet in self.fleets.values():
                fleet.stop()
            self._settle()
            report = self._report(state_dir, ran_s, self.interrupted)
            self.view.say(f"stopping nodes, edges, InfluxDB and {self.stack.broker_name}")
        return report

    def _places(self, site: EdgeSite) -> dict[str, str]:
        kinds = {
            node_id(site, KINDS[i % len(KINDS)], i // len(KINDS) + 1): KINDS[i % len(KINDS)]
            for i in range(self.opts.nodes_per_zone)
        }
        return places(site, kinds)

    def _start_fleets(self, state_dir: Path) -> None:
        assert self.stack is not None
        host, port = self.stack.broker_address
        for i, site in enumerate(self.sites):
            fleet = ZoneFleet(
                host,
                port,
                site,
                self.opts.nodes_per_zone,
                self.opts.interval_s,
                self.opts.seed * 1000 + i,
                state_dir / "nodes" / site.name,
                self.stack.broker_servers,
            )
            self.stack.defer(fleet.stop)
            self.view.say(
                f"starting {len(fleet.nodes)} nodes in {site.district}/{site.zone}: "
                f"{', '.join(n.node_id for n in fleet.nodes)}"
            )
            fleet.start()
            self.fleets[site] = fleet

    def _state(self, started: float, phase: str):
        assert self.stack is not None and self.stack.observer is not None
        expected = {s: self.opts.nodes_per_zone for s in self.sites}
        state = gather(
            self.stack.observer, self.stack.edges, expected, self.staged, started, self.opts.duration_s, phase
        )
        self.peak_online = max(self.peak_online, sum(z.online for z in state.zones))
        return state

    def _wait_online(self) -> None:
        started = time.monotonic()
        total = self.opts.nodes_per_zone * len(self.sites)
        while time.monotonic() - started < ONLINE_WAIT_S:
            state = self._state(started, "nodes coming online")
            self.view.update(state)
            if sum(z.online for z in state.zones) >= total:
                return
            self._pause(0.25)
        online = sum(z.online for z in self._state(started, "").zones)
        self.problems.append(f"only {online} of {total} nodes online after {ONLINE_WAIT_S:.0f} s")
        self.view.say(self.problems[-1])

    def _interrupt(self) -> None:
        self.interrupted = True

    def _pause(self, seconds: float) -> None:
        """Wait between two steps of the running city; a Ctrl-C ends the run here (a signal
        cuts the sleep short only when its handler raises, so this is at most `seconds` late)."""
        time.sleep(seconds)
        if self.interrupted:
            raise KeyboardInterrupt

    # -- staged alarms
    def _stage_plan(self) -> None:
        """Pick the nodes that will raise the three alarms, spread over the city."""
        plan = [
            ("leak", "leak", "leak", {"wet": True, "conductance": 4000}, 0),
            ("manhole cover opened", "manhole", "cover-open", {"cover_open": True, "tilt_deg": 40.0}, 3),
            ("gas (CH4)", "manhole", "ch4", {"ch4_lel": 30.0}, 2),
        ]
        for label, kind, event, stimulus, site_index in plan:
            # The preferred zone first, then the others in turn.
            order = self.sites[site_index:] + self.sites[:site_index]
            found = next(
                ((site, node) for site in order if (node := self._node_of_kind(site, kind)) is not None), None
            )
            if found is None:
                # Fewer nodes per zone than kinds: the city has no node to stage this on.
                self.notes.append(f"{label} not staged: no free {kind} node in the city")
                continue
            site, node = found
            self.staged.append(StagedAlarm(label, _node_id(node), site.district, site.zone, event, stimulus))

    def _node_of_kind(self, site: EdgeSite, kind: str) -> Any:
        taken = {s.node for s in self.staged}
        for node in self.fleets[site].nodes:
            if _node_kind(node) == kind and _node_id(node) not in taken:
                return node
        return None

    def _sim_node(self, staged: StagedAlarm) -> Any:
        site = EdgeSite(staged.district, staged.zone)
        return next(n for n in self.fleets[site].nodes if _node_id(n) == staged.node)

    def _run_city(self) -> None:
        assert self.stack is not None and self.stack.observer is not None
        started = time.monotonic()
        first = max(3.0, self.opts.duration_s * 0.3)
        times = [first + 3.0 * i for i in range(len(self.staged))]
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= self.opts.duration_s:
                break
            for staged, at in zip(self.staged, times):
                if staged.set_at is None and elapsed >= at:
                    self._stage(staged)
            self._measure()
            self.view.update(self._state(started, "running"))
            self._pause(0.1)
        self.view.update(self._state(started, "done"), force=True)

    def _stage(self, staged: StagedAlarm) -> None:
        assert self.stack is not None
        moment = Moment.now()
        apply_stimulus(self._sim_node(staged), staged.stimulus)
        staged.set_at = moment.mono
        self.view.say(
            f"staging {staged.label} on {staged.district}/{staged.zone}/{staged.node}: {staged.stimulus}"
        )
        db = f"district_{staged.district}"
        self.probes.append(
            (
                staged,
                EventPointProbe(self.stack.influx, db, staged.node, staged.event, True, moment, GIVE_UP_S),
            )
        )

    def _measure(self) -> None:
        assert self.stack is not None and self.stack.observer is not None
        for staged in self.staged:
            if staged.set_at is not None and staged.topic_ms is None:
                seen = self.stack.observer.alarms_matching(staged.node, staged.event, True, staged.set_at)
                if seen:
                    staged.topic_ms = (seen[0].received - staged.set_at) * 1000
        for staged, probe in self.probes:
            if probe.done():
                staged.influx_ms = probe.seen_after_ms
            self._notified(staged)

    def _notified(self, staged: StagedAlarm, timeout: float = 0.0) -> None:
        """The institution told of a staged alarm, and when (from the demo's webhook)."""
        if staged.set_at is None or staged.notified_ms is not None or self.dispatch is None:
            return
        told = self.dispatch.notified(staged.node, staged.event, staged.set_at, timeout)
        if told is not None:
            staged.notified_ms = (told.received - staged.set_at) * 1000
            staged.notified_to = told.receiver

    def _settle(self) -> None:
        """Let staged probes finish and the edges forward what they hold before counting."""
        assert self.stack is not None
        deadline = time.monotonic() + DRAIN_WAIT_S
        for staged, probe in self.probes:
            if staged.topic_ms is None and staged.set_at is not None and self.stack.observer:
                left = max(0.0, min(deadline, staged.set_at + GIVE_UP_S) - time.monotonic())
                alarm = self.stack.observer.wait_alarm(staged.node, staged.event, True, staged.set_at, left)
                if alarm is not None:
                    staged.topic_ms = (alarm.received - staged.set_at) * 1000
            staged.influx_ms = probe.result()
            if staged.set_at is not None:
                self._notified(staged, max(0.0, min(deadline, staged.set_at + GIVE_UP_S) - time.monotonic()))
        if not self.stack.wait_edges_quiet(max(1.0, deadline - time.monotonic())):
            self.problems.append(f"the edges had not forwarded everything after {DRAIN_WAIT_S:.0f} s")
        for staged in self.staged:
            if staged.set_at is None:
                self.notes.append(f"{staged.label} not staged: the run ended first")
            elif staged.topic_ms is None or staged.influx_ms is None or staged.notified_ms is None:
                self.problems.append(
                    f"{staged.label} on {staged.node}: "
                    + ("no alarm on the alarms topic; " if staged.topic_ms is None else "")
                    + ("not visible in InfluxDB; " if staged.influx_ms is None else "")
                    + ("no institution told" if staged.notified_ms is None else "")
                )

    def _report(self, state_dir: Path, ran_s: float, interrupted: bool) -> DemoReport:
        assert self.stack is not None and self.stack.observer is not None
        return DemoReport(
            state_dir=state_dir,
            ran_s=ran_s,
            interrupted=interrupted,
            nodes=self.opts.nodes_per_zone * len(self.sites),
            nodes_online=self.peak_online,
            messages=self.stack.observer.messages,
            staged=self.staged,
            districts=district_landing(self.stack.influx, list(DISTRICTS)),
            city=city_landing(self.stack.influx),
            problems=self.problems,
            notes=self.notes,
        )


def _node_id(node: Any) -> str:
    return node.config["node"]


def _node_kind(node: Any) -> str:
    return node.config["kind"]


def node_id(site: EdgeSite, kind: str, index: int) -> str:
    """A node id unique in the whole city (the broker and the edge key on it): the first
    letters of district and zone, the kind's letter and a number, e.g. xuh-cao-p01."""
    return f"{site.district[:3]}-{site.zone[:3]}-{kind[0]}{index:02d}"


class ZoneFleet:
    """The sim nodes of one zone, kinds in turn, each the real firmware under the unix port
    (hil/sim.py's SimNode with its config from hil/sim.py's node_config: air nodes always
    on, the battery kinds duty-cycled)."""

    def __init__(
        self,
        host: str,
        port: int,
        site: EdgeSite,
        count: int,
        interval_s: float,
        seed: int,
        base_dir: Path,
        servers: list[str] | None = None,
    ) -> None:
        from hil.sim import SimNode, node_config
        from hil.sim_build import build_bundle, default_bundle_dir

        bundle = build_bundle(default_bundle_dir())
        self.interval_s = interval_s
        self.nodes: list[Any] = []
        for i in range(count):
            kind = KINDS[i % len(KINDS)]
            nid = node_id(site, kind, i // len(KINDS) + 1)
            cfg = node_config(
                nid,
                kind,
                site.district,
                site.zone,
                host,
                port,
                interval_s,
                seed=seed * 101 + i,
                servers=servers,
            )
            self.nodes.append(SimNode(base_dir / nid, cfg, bundle=bundle))

    def start(self) -> None:
        # Spread the first wake-ups over (at most) one interval so they do not all publish
        # in the same instant.
        gap = min(self.interval_s, 2.0) / max(1, len(self.nodes))
        for node in self.nodes:
            node.start()
            time.sleep(gap)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            # The supervisor keeps a node's console in memory only: leave its last lines in
            # the node's flash folder, where a user looking into a problem finds them.
            (node.flash_dir / "console.log").write_text(node.console_tail(200) + "\n")
