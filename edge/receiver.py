"""The receiving process: the edge's main MQTT session (telemetry, status, acks) in a
process of its own, with `[mqtt] receiver = "process"`.

Why: in a backlog, paho-mqtt's per-message Python (reading each PUBLISH, its
MQTTMessage, the callback, the PUBACK) is about a quarter of the edge's CPU, and it runs
under the same interpreter lock as the commit loop, so the edge used one core where the
machine has two. Here paho runs in a second interpreter and hands the messages over in
batches (edge.frames); the commit loop keeps everything else.

The guarantees do not move: this process acknowledges a message only when the edge says
so after the commit (an "ack" frame, for the connection that delivered it), so a message
in this process, in the pipe or in the edge's inbox when either process dies is simply
not acknowledged, and the broker delivers it again.

This process also decodes each message (edge.fastdecode's fast pass; `decoded` is its
message, or None when the reference decoder must decide) and formats the line protocol
of each reading it decoded (`lines`, edge.schema.raw_line): work that needs nothing of
the edge's state, done here on the core paho leaves free rather than in the commit loop,
which the edge's throughput waits on. The commit loop still screens each message first
and makes every decision on it; a reading whose time it moves gets its line made again.

Started by edge.receiving.ReceiverSession as `python -m edge.receiver`; stdin carries
the edge's frames, stdout this process's (nothing else may write to it), stderr the log.

    edge -> receiver   ("start", mqtt section, base folder, filters, client id, unlimited,
                         window, log level, log format)
                       ("ack", generation, [packet ids])
                       ("pubs", [(topic, payload)])   retained, QoS 1 (receipts)
                       ("stop",)
    receiver -> edge   ("msgs", [(mid, qos, topic, payload, arrival ms, generation, size,
                         retained, decoded, lines)], redelivered, receipts ignored, QoS 0 dropped)
                       ("up", generation, member of the broker tier)
                       ("down", generation, failure, reason)
                       ("error", what, wall clock s, count)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge import collector
from edge.config import EdgeConfig, MqttConfig
from edge.fastdecode import fast_only
from edge.frames import FrameReader, FrameWriter
from edge.ingest import Inbox, Incoming, MqttIngest
from edge.logs import current_logging, setup_logging
from edge.schema import raw_line
from protocols.topics import TELEMETRY

log = logging.getLogger("urbansense.edge.receiver")

# Messages per "msgs" frame at most; under load a frame carries what came within
# FRAME_WAIT_S of its first message. Without the wait a 50,000-message drain went over in
# about 5,200 frames of 10 messages, with 250 of about 200 (bench/edge_throughput.py): the
# edge's frame reader spent 3.2-4.0 us per message instead of 4.6-5.8. Events do not come
# this way (their session is the edge's own), so no alarm waits for it.
BATCH = 1000
FRAME_WAIT_S = 0.005


def tell(out: FrameWriter, frame: tuple[Any, ...]) -> None:
    """A frame to the edge; if the edge is gone (its pipe closed), this process ends here
    and now: nothing it holds was acknowledged, so nothing is lost with it."""
    try:
        out.write(frame)
    except OSError:
        os._exit(0)


class ReportingIngest(MqttIngest):
    """MqttIngest that tells the edge when its connection comes and goes."""

    out: FrameWriter

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        super()._on_connect(client, userdata, flags, reason_code, properties)
        if not reason_code.is_failure:
            tell(self.out, ("up", self.generation, self.member))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        tell(self.out, ("down", self.generation, bool(reason_code.is_failure), str(reason_code)))

    def _connect_error(self, what: str) -> None:
        super()._connect_error(what)
        tell(self.out, ("error", what, self.last_error_at, self.connect_errors))


def start_frame(
    cfg: EdgeConfig, filters: list[str], client_id: str, unlimited: bool, window: int | None
) -> tuple[Any, ...]:
    """What the receiving process needs: the edge's MQTT section, its folder, its window
    (edge.window), and how the edge logs (the process writes its lines to the same log,
    the same way)."""
    mqtt = cfg.mqtt.model_dump(mode="json", exclude_unset=True)
    return ("start", mqtt, str(cfg.base_dir), filters, client_id, unlimited, window, *current_logging())


def _session(frame: tuple[Any, ...], inbox: Inbox, out: FrameWriter) -> ReportingIngest:
    _, mqtt, base_dir, filters, client_id, unlimited, window, level, fmt = frame
    setup_logging(level, fmt)
    # The edge validated the whole config; only its MQTT section and folder are used
    # here (MqttIngest reads cfg.mqtt and cfg.path), so the rest is not built again.
    cfg = EdgeConfig.model_construct(mqtt=MqttConfig.model_validate(mqtt), base_dir=Path(base_dir))
    session = ReportingIngest(cfg, inbox, filters, client_id=client_id, window=window)
    session.out = out
    if unlimited:
        session.unlimited_outgoing()
    return session


def row_of(m: Incoming) -> tuple[Any, ...]:
    """A message as a "msgs" frame carries it, with the fast pass's decoding at its arrival
    time (none for a payload clipped at ingest: the screen refuses it as too large) and,
    for telemetry, the line of each reading as stored unless its time is moved.

    The message is not screened yet (the commit loop does that first, then decides): the
    fast pass refuses a payload over the protocol's sizes before parsing it, and any
    failure of the parser (msgspec's own nesting limit included) is a None here."""
    decoded = fast_only(m.topic, m.payload, m.arrival_ms) if m.size <= len(m.payload) else None
    lines = None
    if decoded is not None and decoded["channel"] == TELEMETRY:
        where = decoded["district"], decoded["zone"], decoded["node"], decoded["kind"]
        lines = [
            raw_line(*where, r["fields"], r["ts"], r["time_source"] == "edge") for r in decoded["readings"]
        ]
    return (m.mid, m.qos, m.topic, m.payload, m.arrival_ms, m.generation, m.size, m.retained, decoded, lines)


def _forward(inbox: Inbox, out: FrameWriter) -> None:
    """Messages from paho's thread to the edge, a batch per frame, with the counts the
    edge's metrics show (as increments)."""
    sent = [0, 0, 0]
    while True:
        batch = inbox.take(BATCH, 1.0, FRAME_WAIT_S)
        counts = [inbox.redelivered, inbox.receipts_ignored, inbox.qos0_dropped]
        if not batch and counts == sent:
            continue
        tell(out, ("msgs", [row_of(m) for m in batch], *(now - before for now, before in zip(counts, sent))))
        sent = counts


def serve(reader: FrameReader, out: FrameWriter) -> int:
    first = reader.read()
    if first is None or first[0] != "start":
        log.error("receiver: no start frame from the edge")
        return 2
    inbox = Inbox()
    session = _session(first, inbox, out)
    threading.Thread(target=_forward, args=(inbox, out), name="receiver-forward", daemon=True).start()
    session.start()
    collector.settle()
    while True:
        frame = reader.read()
        if frame is None:
            # The edge is gone (its end of the pipe closed: it stopped or was killed).
            # Nothing here is acknowledged that it did not commit: leave at once.
            return 0
        kind = frame[0]
        if kind == "ack":
            session.ack_ids(frame[1], frame[2])
        elif kind == "pubs":
            session.publish_retained_all(frame[1])
        elif kind == "stop":
            session.stop()
            return 0


def main() -> None:
    setup_logging("info", "text")  # until the start frame says how the edge logs
    # The edge stops this process ("stop", or by closing its stdin): Ctrl-C at a terminal
    # and a service manager's SIGTERM reach the whole group, and the edge's own orderly
    # stop must find this process still there to disconnect cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # stdout is the frame stream: anything printed by mistake goes to the log instead.
    frames_out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        code = serve(FrameReader(0), FrameWriter(frames_out))
    except BrokenPipeError:
        code = 0  # the edge is gone
    except Exception:
        log.exception("receiver stopping on an error")
        code = 1
    # No interpreter shutdown (paho's thread, joins): the session's state lives at the
    # broker, and nothing here is left to flush.
    os._exit(code)


if __name__ == "__main__":
    main()
