"""ReceiverSession: the edge's side of its receiving process (edge.receiver).

It stands where an MqttIngest stands for the commit loop and the metrics (a SessionState
with ack(), publish_retained_all(), start(), stop()): it starts `python -m edge.receiver`,
puts the batches it sends into the Inbox, mirrors its connection state, and sends it the
acknowledgements of committed messages and the receipts to publish.

Acknowledgements name the connection that delivered a message (its generation). A
receiving process that dies (or is killed) is started again; the messages it had handed
over belong to a generation no later process has, so they are never acknowledged on
another connection: the broker delivers them again and the buffer drops the copies.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.config import EdgeConfig
from edge.frames import FrameError, FrameReader, FrameWriter
from edge.ingest import Inbox, Incoming, SessionState
from edge.receiver import start_frame

log = logging.getLogger("urbansense.edge.receiving")

# Generations of one receiving process are numbered from 1; the edge's own numbering
# gives each process a block of its own, so a generation never names two connections.
GENERATIONS_PER_PROCESS = 1 << 32

# A receiving process that died is started again after this long (then twice as long,
# up to the maximum, while it keeps dying).
RESTART_MIN_S = 0.2
RESTART_MAX_S = 10.0

# How long a stopping receiving process has to disconnect before it is killed.
STOP_TIMEOUT_S = 10.0

# The folder that holds the `edge` package: on the receiving process's path, so the
# same code runs there whether the edge runs from a checkout or an installed wheel.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class ReceiverSession(SessionState):
    def __init__(
        self,
        cfg: EdgeConfig,
        inbox: Inbox,
        filters: list[str],
        client_id: str | None = None,
        window: int | None = None,
    ) -> None:
        super().__init__(cfg.mqtt.members, client_id or cfg.mqtt.client_id)
        self.cfg = cfg
        self.inbox = inbox
        self.filters = filters
        self.window = window  # edge.window: kept in the process, where paho takes messages in
        self._unlimited = False
        self._stopping = threading.Event()
        # Guards the process, its pipe and the generation together: an ack is written
        # only to the process whose connection delivered the messages.
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._out: FrameWriter | None = None
        self._process_number = 0
        self._errors_before = 0  # connection errors of the processes before this one
        self._restart_s = RESTART_MIN_S
        self.restarts = 0

    def unlimited_outgoing(self) -> None:
        """No cap on receipts in flight (MqttIngest.unlimited_outgoing), in the process."""
        self._unlimited = True

    # -- the process ----------------------------------------------------------------------
    def start(self) -> None:
        self.down_since = self.last_message = time.monotonic()
        self._spawn()

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        out = FrameWriter(proc.stdin.fileno())
        with self._lock:
            if self._stopping.is_set():  # stop() came while this one was starting
                proc.kill()
                proc.wait()
                proc.stdin.close()
                proc.stdout.close()
                return
            self._process_number += 1
            self._proc, self._out = proc, out
        out.write(start_frame(self.cfg, self.filters, self.client_id, self._unlimited, self.window))
        threading.Thread(
            target=self._read,
            args=(proc, FrameReader(proc.stdout.fileno()), self._process_number),
            name=f"receiver-{self._process_number}",
            daemon=True,
        ).start()
        log.info("receiving process %d started for %s", proc.pid, self.client_id)

    def _read(self, proc: subprocess.Popen, frames: FrameReader, number: int) -> None:
        base = number * GENERATIONS_PER_PROCESS
        try:
            while True:
                frame = frames.read()
                if frame is None:
                    break
                kind = frame[0]
                if kind == "msgs":
                    _, rows, redelivered, ignored, dropped = frame
                    self.inbox.put_many(
                        [
                            Incoming(
                                mid, qos, topic, payload, arrival, base + gen, self, size, retained, *made
                            )
                            for mid, qos, topic, payload, arrival, gen, size, retained, *made in rows
                        ],
                        redelivered,
                        ignored,
                        dropped,
                    )
                    if rows:
                        self.last_message = time.monotonic()
                elif kind == "up":
                    self._up(base + frame[1], frame[2])
                elif kind == "down":
                    self._down()
                elif kind == "error":
                    self.last_error, self.last_error_at = frame[1], frame[2]
                    self.connect_errors = self._errors_before + frame[3]
        except (FrameError, OSError, ValueError, EOFError, TypeError) as err:
            log.error("receiving process %d: unreadable output (%s); stopping it", proc.pid, err)
            proc.kill()
        except Exception:
            # Whatever it was, the process is started again rather than left unread.
            log.exception("receiving process %d: its output could not be taken; stopping it", proc.pid)
            proc.kill()
        self._gone(proc)

    def _up(self, generation: int, member: int) -> None:
        self.member = member  # before say_up: it names the member that answers
        self.say_up()
        with self._lock:
            self.generation = generation
        self._restart_s = RESTART_MIN_S
        self.connected.set()

    def _down(self) -> None:
        if self.connected.is_set():
            self.down_since = time.monotonic()
        self.connected.clear()

    def _gone(self, proc: subprocess.Popen) -> None:
        """The process's output ended: it stopped, or died. Its generation is over."""
        with self._lock:
            if self._proc is proc:
                self._out = None
                self.generation = 0  # no connection: nothing is acked until the next "up"
            # Closed under the lock, after no writer can use it: a closed descriptor's
            # number is soon another file's.
            if proc.stdin is not None:
                proc.stdin.close()
        self._down()
        self._errors_before = self.connect_errors
        code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stopping.is_set():
            return
        log.warning(
            "receiving process %d for %s ended (exit code %s); starting another in %.1f s",
            proc.pid,
            self.client_id,
            code,
            self._restart_s,
        )
        if self._stopping.wait(self._restart_s):
            return
        self._restart_s = min(RESTART_MAX_S, self._restart_s * 2)
        self.restarts += 1
        self._spawn()

    def _send(self, frame: tuple, generation: int | None = None) -> bool:
        with self._lock:
            if self._out is None or (generation is not None and generation != self.generation):
                return False
            try:
                self._out.write(frame)
            except OSError:
                return False  # the process is gone: its reader starts another
        return True

    # -- used by the commit loop ----------------------------------------------------------
    def ack(self, messages: list[Incoming]) -> int:
        """PUBACK committed messages, through the process whose connection delivered
        them (QoS 1: the subscriptions' QoS). Others wait for the broker's redelivery."""
        gen = self.generation
        mids = [m.mid for m in messages if m.source is self and m.qos == 1 and m.generation == gen]
        if not mids or not self._send(("ack", gen % GENERATIONS_PER_PROCESS, mids), gen):
            return 0
        return len(mids)

    def publish_retained_all(self, messages: list[tuple[str, bytes]]) -> None:
        """Receipts: retained, QoS 1, through the process's session, in one frame. With no
        process (it died a moment ago) they are not sent: each node is told by the next."""
        self._send(("pubs", messages))

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is None:
            return
        self._send(("stop",))
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("receiving process %d did not stop in %.0f s: killed", proc.pid, STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()
