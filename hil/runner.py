"""Play a scenario on a rig and measure every expectation.

For one scenario: bring up a private broker, InfluxDB and the zone's edge (hil/stack),
set up each board (sim node, or a serial/virtual board flashed by the provisioning code),
wait until every node has said it is online, play the timeline (stimuli, faults, commands)
at its times, then check the expectations against what the observer saw on the broker and
what InfluxDB holds. Every expectation reports its measured figure, met or not."""

from __future__ import annotations

import copy
import itertools
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hil import scenario as sc
from hil.node_handles import NodeHandle, NodeHandleError
from hil.results import ExpectationResult, ScenarioResult
from hil.services import ServiceError
from hil.stack.city_stack import CityStack
from hil.stack.dispatch import Dispatch
from hil.stack.edges import EdgeSite
from hil.stack.probes import EventPointProbe, Moment
from protocols import topics

BoardFactory = Callable[[sc.BoardSpec, sc.Site, tuple[str, int], Path], NodeHandle]

# How long a measurement keeps looking past its limit, so that a missed expectation still
# reports how late the thing came (or that it never came within this grace).
GRACE_S = 10.0
COUNT_SETTLE_S = 20.0


class ScenarioRun:
    def __init__(
        self,
        scenario: sc.Scenario,
        source: str,
        boards: list[BoardFactory],
        workdir: Path,
        progress: Callable[[str], None],
        board_host: str | None = None,
        abort: threading.Event | None = None,
    ) -> None:
        self.scenario = scenario
        self.source = source
        self.factories = boards
        self.workdir = workdir
        self.progress: Callable[[str], None] = lambda line: progress(f"[{scenario.name}] {line}")
        self.site = EdgeSite(scenario.site.district, scenario.site.zone)
        # With `notified` expectations: Alertmanager and the institutions' webhook beside it.
        self.dispatch: Dispatch | None = None
        extra = None
        if any(isinstance(e, sc.NotifiedExpect) for e in scenario.expect):
            self.dispatch = Dispatch(workdir / "alertmanager", self.progress, repost_s=5)
            extra = self.dispatch.edge_extra(lambda: self.stack, self._responsibility)
        self.stack = CityStack(workdir, [self.site], self.progress, board_host=board_host, edge_extra=extra)
        self.handles: dict[str, NodeHandle] = {}
        self.steps: dict[str, Moment] = {}
        self.influx_probes: list[tuple[sc.InfluxExpect, EventPointProbe]] = []
        self.result = ScenarioResult(scenario.name, source)
        self.abort = abort or threading.Event()  # set when the whole run is interrupted

    # -- the run
    def run(self) -> ScenarioResult:
        began = time.monotonic()
        try:
            with self.stack:
                self._boards_up()
                self._play()
                self._evaluate()
        except (ServiceError, NodeHandleError, ConnectionError, OSError) as err:
            self.result.error = str(err).splitlines()[0] if str(err) else type(err).__name__
        finally:
            self.result.duration_s = time.monotonic() - began
            if not self.result.passed:
                self.result.logs = self._log_tails()
        return self.result

    def _responsibility(self) -> tuple[str, str]:
        """The scenario's responsibility file (YAML), each institution told through the
        rig's webhook, and Alertmanager's timers short unless the scenario sets them."""
        assert self.dispatch is not None
        receivers = [e.receiver for e in self.scenario.expect if isinstance(e, sc.NotifiedExpect)]
        data = copy.deepcopy(self.scenario.responsibility) or {
            "institutions": {r: {"name": r} for r in dict.fromkeys(receivers)},
            "default": {"institution": receivers[0]},
        }
        for name, inst in (data.get("institutions") or {}).items():
            if isinstance(inst, dict) and not inst.get("webhook") and not inst.get("email"):
                inst["webhook"] = [self.dispatch.webhook.url(name)]
        data["notify"] = {"group_wait": "1s", "group_interval": "2s", **(data.get("notify") or {})}
        data["alertmanager"] = {"url": self.dispatch.alertmanager.url}
        return yaml.safe_dump(data, sort_keys=False), ".yaml"

    def _log_tails(self) -> dict[str, str]:
        tails = self.stack.log_tails()
        if self.dispatch is not None:
            tails["alertmanager"] = self.dispatch.alertmanager.log_tail(30)
        for node, handle in self.handles.items():
            tails[node] = handle.log_tail()
        return tails

    def _boards_up(self) -> None:
        broker = self.stack.board_broker_address
        for spec, factory in zip(self.scenario.boards, self.factories):
            self.progress(f"setting up board {spec.node} ({spec.kind})")
            handle = factory(spec, self.scenario.site, broker, self.workdir / "boards" / spec.node)
            self.stack.defer(handle.stop)
            handle.start()
            self.handles[spec.node] = handle
            self.result.boards.append(f"{spec.node}: {handle.description}")
        assert self.stack.observer is not None
        missing = self.stack.observer.wait_online(list(self.handles), self.scenario.online_timeout_s)
        if missing:
            raise NodeHandleError(
                f"no birth message from {', '.join(missing)} within {self.scenario.online_timeout_s:.0f} s"
            )

    def _actions(self) -> list[tuple[float, int, str, Callable[[], None], str | None]]:
        """The timeline as (time, order, what, action, step id), outage ends included."""
        order = itertools.count()
        out: list[tuple[float, int, str, Callable[[], None], str | None]] = []
        for step in self.scenario.timeline:
            begin, end, what = self._step_actions(step)
            out.append((step.at, next(order), what, begin, step.id))
            if end is not None:
                out.append((step.at + step.for_s, next(order), f"end of {what}", end, None))
        return sorted(out, key=lambda action: (action[0], action[1]))

    def _step_actions(self, step: Any) -> tuple[Callable[[], None], Callable[[], None] | None, str]:
        stack = self.stack
        if isinstance(step, sc.StimulusStep):
            values: dict[str, Any] = {**dict(step.set), **{name: None for name in step.clear}}
            return (
                (lambda: self.handles[step.node].stimulate(values)),
                None,
                f"stimulus {values} on {step.node}",
            )
        if isinstance(step, sc.OutageStep):
            if step.do == "broker-down":
                return stack.broker.stop, stack.broker.start, f"broker down for {step.for_s:g} s"
            if step.do == "broker-crash":
                return stack.broker.kill, stack.broker.start, f"broker killed -9, down for {step.for_s:g} s"
            if step.do == "influxdb-down":
                return stack.influx.stop, stack.influx.start, f"InfluxDB down for {step.for_s:g} s"
            edge = stack.edges[self.site]
            return edge.kill, edge.start, f"edge killed for {step.for_s:g} s"
        if isinstance(step, sc.NetworkCutStep):
            handle = self.handles[step.node]
            return (
                (lambda: handle.cut_network(True)),
                (lambda: handle.cut_network(False)),
                f"network of {step.node} cut for {step.for_s:g} s",
            )
        if isinstance(step, sc.PowerLossStep):
            return self.handles[step.node].power_loss, None, f"power loss on {step.node}"
        assert isinstance(step, sc.CommandStep)
        topic = topics.topic(self.site.district, self.site.zone, step.node, topics.CMD)
        payload = sc.command_payload(step)
        assert stack.observer is not None
        observer = stack.observer
        return (lambda: observer.publish(topic, payload)), None, f"command {step.cmd} to {step.node}"

    def _play(self) -> None:
        t0 = time.monotonic()
        for at, _, what, action, step_id in self._actions():
            self._wait_until(t0 + at)
            self.progress(f"t={at:g} s: {what}")
            started = Moment.now()
            action()
            if step_id is not None:
                self.steps[step_id] = started
                self._start_probes(step_id, started)
        self._wait_until(t0 + self.scenario.length_s)

    def _wait_until(self, moment: float) -> None:
        if self.abort.wait(max(0.0, moment - time.monotonic())):
            raise KeyboardInterrupt  # another thread was interrupted: stop this run too

    def _freeze(self) -> None:
        """Stop the boards and let the edge forward what it holds, so that what the broker
        carried and what InfluxDB holds can be compared."""
        self.progress("stopping the boards; letting the edge forward what it holds")
        for handle in self.handles.values():
            handle.stop()
        if not self.stack.wait_edges_quiet(COUNT_SETTLE_S):
            self.progress(f"the edge still had lines to forward after {COUNT_SETTLE_S:g} s")

    def _start_probes(self, step_id: str, started: Moment) -> None:
        for exp in self.scenario.expect:
            if isinstance(exp, sc.InfluxExpect) and exp.after == step_id:
                db = self._database(exp.database)
                probe = EventPointProbe(
                    self.stack.influx,
                    db,
                    exp.node,
                    exp.event,
                    exp.state,
                    started,
                    exp.within_ms / 1000 + GRACE_S,
                )
                self.influx_probes.append((exp, probe))

    def _database(self, level: str) -> str:
        return f"district_{self.site.district}" if level == "district" else "city"

    # -- expectations
    def _evaluate(self) -> None:
        checks = {
            sc.AlarmExpect: self._alarm,
            sc.InfluxExpect: self._influx,
            sc.PointsExpect: self._points,
            sc.SequenceExpect: self._sequence,
            sc.AckExpect: self._ack,
            sc.NotifiedExpect: self._notified,
        }
        # Timed expectations first, while the boards still run, so a late alarm or ack is
        # still measured; then the counts, on a city that has stopped moving.
        timed = [
            e
            for e in self.scenario.expect
            if isinstance(e, (sc.InfluxExpect, sc.AckExpect, sc.NotifiedExpect))
            or (isinstance(e, sc.AlarmExpect) and e.after is not None)
        ]
        results = {id(e): checks[type(e)](e) for e in timed}
        self._freeze()
        for exp in self.scenario.expect:
            if id(exp) not in results:
                results[id(exp)] = checks[type(exp)](exp)
        self.result.expectations.extend(results[id(e)] for e in self.scenario.expect)

    def _alarm(self, exp: sc.AlarmExpect) -> ExpectationResult:
        observer = self.stack.observer
        assert observer is not None
        what = f"{exp.event} {'raised' if exp.state else 'cleared'} on alarms/v1/.../{exp.node}/{exp.event}"
        if exp.count is not None:
            since = self.steps[exp.since].mono if exp.since in self.steps else 0.0
            until = self.steps[exp.until].mono if exp.until in self.steps else float("inf")
            n = sum(
                1
                for a in observer.alarms_matching(exp.node, exp.event, exp.state, since)
                if a.received < until
            )
            label = exp.name or f"{exp.count} x {what}"
            scope = (f" since {exp.since}" if exp.since else "") + (
                f" until {exp.until}" if exp.until else ""
            )
            return ExpectationResult(label, n == exp.count, f"{n} seen{scope}, expected {exp.count}", n)
        assert exp.after is not None and exp.within_ms is not None
        started = self.steps.get(exp.after)
        label = exp.name or what
        if started is None:
            return ExpectationResult(label, False, f"step {exp.after} never ran")
        alarm = observer.wait_alarm(
            exp.node,
            exp.event,
            exp.state,
            started.mono,
            max(0.0, started.mono + exp.within_ms / 1000 + GRACE_S - time.monotonic()),
        )
        return _latency(
            label, None if alarm is None else (alarm.received - started.mono) * 1000, exp.within_ms
        )

    def _influx(self, exp: sc.InfluxExpect) -> ExpectationResult:
        label = (
            exp.name
            or f"{exp.event} {'raised' if exp.state else 'cleared'} visible in "
            f"InfluxDB ({self._database(exp.database)}.events)"
        )
        probe = next((p for e, p in self.influx_probes if e is exp), None)
        if probe is None:
            return ExpectationResult(label, False, f"step {exp.after} never ran")
        return _latency(label, probe.result(), exp.within_ms)

    def _points(self, exp: sc.PointsExpect) -> ExpectationResult:
        db = self._database(exp.database)
        where = f" WHERE \"node\" = '{exp.node}'" if exp.node else ""
        query = f'SELECT * FROM "{exp.measurement}"{where}'
        label = exp.name or f"points of {exp.measurement}{' of ' + exp.node if exp.node else ''} in {db}"
        want: int
        detail = ""
        if exp.exactly == "readings":
            assert self.stack.observer is not None and exp.node is not None
            seen = self.stack.observer.snapshot().get(exp.node)
            readings = seen.readings if seen else []
            want = len(set(readings))
            detail = f"; the node published {want} distinct readings in {len(readings)} deliveries"
        else:
            want = exp.exactly if isinstance(exp.exactly, int) else (exp.at_least or 0)

        def holds(n: int) -> bool:
            return n == want if exp.exactly is not None else n >= want

        # The edge forwards in batches (and drains a backlog after an outage): give it time.
        deadline = time.monotonic() + COUNT_SETTLE_S
        while True:
            try:
                n = sum(len(s["values"]) for s in self.stack.influx.query(query, db=db))
            except (OSError, ServiceError) as err:
                return ExpectationResult(label, False, f"query failed: {err}")
            if holds(n) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        bound = f"exactly {want}" if exp.exactly is not None else f"at least {want}"
        return ExpectationResult(label, holds(n), f"{n} points, expected {bound}{detail}", n)

    def _sequence(self, exp: sc.SequenceExpect) -> ExpectationResult:
        assert self.stack.observer is not None
        seen = self.stack.observer.snapshot().get(exp.node)
        label = exp.name or f"readings of {exp.node}: no seq gaps{', in order' if exp.in_order else ''}"
        if seen is None:
            return ExpectationResult(label, False, "nothing seen from the node", 0)
        verdict = sequence_verdict(seen.readings, seen.events, exp.in_order)
        ok = (
            verdict.gaps == 0
            and verdict.distinct_readings >= exp.min_readings
            and (not exp.in_order or verdict.out_of_order == 0)
        )
        measured = (
            f"{verdict.distinct_readings} readings and {verdict.events} events over "
            f"{verdict.boots} boot(s), {verdict.gaps} seq gaps, "
            f"{verdict.duplicates} repeated deliveries"
        )
        if exp.in_order:
            measured += f", {verdict.out_of_order} out of order"
        if verdict.distinct_readings < exp.min_readings:
            measured += f" (expected at least {exp.min_readings} readings)"
        return ExpectationResult(label, ok, measured, verdict.gaps)

    def _ack(self, exp: sc.AckExpect) -> ExpectationResult:
        step = self.scenario.step(exp.after)
        assert isinstance(step, sc.CommandStep) and self.stack.observer is not None
        label = exp.name or f"{step.cmd} command to {step.node} acked"
        started = self.steps.get(exp.after)
        if started is None:
            return ExpectationResult(label, False, f"step {exp.after} never ran")
        ack = self.stack.observer.wait_ack(
            step.node,
            sc.command_id(step),
            started.mono,
            max(0.0, started.mono + exp.within_ms / 1000 + GRACE_S - time.monotonic()),
        )
        if ack is None:
            return _latency(label, None, exp.within_ms)
        result = _latency(label, (ack.received - started.mono) * 1000, exp.within_ms)
        problems = []
        if ack.ok is not exp.ok:
            problems.append(f"ok={str(ack.ok).lower()}" + (f" ({ack.error})" if ack.error else ""))
        if exp.result and not contains(ack.result or {}, exp.result):
            problems.append(f"result {ack.result} lacks {exp.result}")
        if problems:
            return ExpectationResult(
                label, False, f"{result.measured}; but {'; '.join(problems)}", result.value
            )
        return result

    def _notified(self, exp: sc.NotifiedExpect) -> ExpectationResult:
        assert self.dispatch is not None
        what = "raised" if exp.state else "cleared"
        label = exp.name or f"{exp.event} {what} on {exp.node} told to {exp.receiver}"
        started = self.steps.get(exp.after)
        if started is None:
            return ExpectationResult(label, False, f"step {exp.after} never ran")
        told = self.dispatch.notified(
            exp.node,
            exp.event,
            started.mono,
            max(0.0, started.mono + exp.within_ms / 1000 + GRACE_S - time.monotonic()),
            raised=exp.state,
            receiver=exp.receiver,
        )
        return _latency(label, None if told is None else (told.received - started.mono) * 1000, exp.within_ms)


def _latency(label: str, after_ms: float | None, limit_ms: float) -> ExpectationResult:
    if after_ms is None:
        return ExpectationResult(
            label,
            False,
            f"not seen within {limit_ms:g} ms (nor in {GRACE_S:g} s more), limit {limit_ms:g} ms",
        )
    return ExpectationResult(
        label, after_ms <= limit_ms, f"after {after_ms:.0f} ms, limit {limit_ms:g} ms", round(after_ms, 1)
    )


def contains(actual: Any, expected: Any) -> bool:
    """Whether `expected` is a subset of `actual` (dicts compared key by key, recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(actual) == float(expected)
    return actual == expected


@dataclass
class SequenceVerdict:
    distinct_readings: int
    events: int
    boots: int
    gaps: int
    duplicates: int
    out_of_order: int


def sequence_verdict(
    readings: list[tuple[int, int]], events: list[tuple[int, int]], in_order: bool = False
) -> SequenceVerdict:
    """Seq gaps within each boot (readings and events share the counter, SPEC 3.1),
    repeated deliveries, and telemetry readings arriving below one already seen."""
    ids = set(readings) | set(events)
    gaps = 0
    boots = sorted({b for b, _ in ids})
    for boot in boots:
        seqs = sorted(s for b, s in ids if b == boot)
        gaps += (seqs[-1] - seqs[0] + 1) - len(seqs)
    duplicates = (len(readings) - len(set(readings))) + (len(events) - len(set(events)))
    out_of_order = 0
    newest: tuple[int, int] | None = None
    first_seen: set[tuple[int, int]] = set()
    for rid in readings:
        if rid in first_seen:
            continue  # a repeated delivery (at least once), not a reordering
        first_seen.add(rid)
        if newest is not None and rid < newest:
            out_of_order += 1
        newest = rid if newest is None else max(newest, rid)
    return SequenceVerdict(len(set(readings)), len(set(events)), len(boots), gaps, duplicates, out_of_order)


def run_scenarios(
    paths: list[Path],
    board_args: list[str],
    workdir: Path | None,
    progress: Callable[[str], None],
    make_factory: Callable[[str], BoardFactory],
    jobs: int = 1,
    board_host: str | None = None,
) -> list[ScenarioResult]:
    """Run each scenario file; `board_args` gives each board its rig board in order (missing
    ones are `virtual`). With `jobs` > 1, scenarios on virtual boards run side by side, each
    with its own servers; the results keep the order of `paths`."""
    if jobs > 1 and any(a not in ("virtual", "sim") for a in board_args):
        jobs = 1  # one real board cannot be in two scenarios at once
    abort = threading.Event()
    with tempfile.TemporaryDirectory(prefix="urbansense-hil-") as tmp:
        base = Path(workdir) if workdir else Path(tmp)

        def one(path: Path) -> ScenarioResult:
            if abort.is_set():
                raise KeyboardInterrupt
            try:
                scenario = sc.load(path)
            except sc.ScenarioError as err:
                return ScenarioResult(path.stem, str(path), error=str(err))
            args = list(board_args) + ["virtual"] * (len(scenario.boards) - len(board_args))
            factories = [make_factory(a) for a in args[: len(scenario.boards)]]
            return ScenarioRun(
                scenario, str(path), factories, base / scenario.name, progress, board_host, abort
            ).run()

        if jobs <= 1:
            return [one(p) for p in paths]
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="scenario") as pool:
            try:
                return list(pool.map(one, paths))
            except KeyboardInterrupt:
                # Ctrl-C reaches this thread only: the running scenarios stop at their next
                # step and take their servers and boards down before the pool is left.
                abort.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
