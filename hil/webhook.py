"""WebhookReceiver: the institutions' end of Alertmanager's webhook receiver, for the tests,
the rig and the demo. It records every notification it is sent, with the moment it came.

Alertmanager POSTs one JSON document per notification (a group of alerts, `status` firing
or resolved, each alert with its labels, annotations, startsAt and endsAt: the webhook
format of Alertmanager 0.25, version "4"). Each institution gets a path of its own,
`/<name>`, on one server, so one process plays every institution of a city.

Written on `http.server` because all it does is take a POST and keep its body: a real
HTTP server, in a thread, on a free loopback port. It answers 200 (or, while
`answer_status` says otherwise, that status, to see Alertmanager retry).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Notification:
    """One webhook call: which institution (path), what Alertmanager sent, and when it came
    (monotonic seconds and Unix ms, taken as the body was read)."""

    receiver: str
    payload: dict[str, Any]
    received: float
    received_ms: int

    @property
    def status(self) -> str:
        return self.payload.get("status", "")

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return self.payload.get("alerts", [])

    def alerts_matching(self, status: str | None = None, **labels: str) -> list[dict[str, Any]]:
        """The alerts of this notification with these label values (and alert status)."""
        return [
            a
            for a in self.alerts
            if (status is None or a.get("status") == status)
            and all(a.get("labels", {}).get(k) == v for k, v in labels.items())
        ]


@dataclass
class _Book:
    notifications: list[Notification] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._book = _Book()
        self.answer_status = 200
        book = self._book
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received, received_ms = time.monotonic(), time.time_ns() // 1_000_000
                status = owner.answer_status
                if status == 200:
                    try:
                        payload = json.loads(body)
                    except ValueError:
                        payload = {"unreadable": body.decode("utf-8", "replace")}
                    name = self.path.strip("/").split("?")[0] or "default"
                    with book.changed:
                        book.notifications.append(Notification(name, payload, received, received_ms))
                        book.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per call on stderr would drown a test's output

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, receiver: str) -> str:
        """Where Alertmanager posts the notifications for one institution."""
        return f"http://127.0.0.1:{self.port}/{receiver}"

    def start(self) -> WebhookReceiver:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what came
    def notifications(self, receiver: str | None = None) -> list[Notification]:
        with self._book.changed:
            return [n for n in self._book.notifications if receiver is None or n.receiver == receiver]

    def wait(self, found: Callable[[list[Notification]], Any], timeout: float) -> Any:
        """found(all notifications so far)'s first truthy value, re-checked as each one
        arrives; None once `timeout` seconds passed without one."""
        deadline = time.monotonic() + timeout
        with self._book.changed:
            while True:
                result = found(list(self._book.notifications))
                left = deadline - time.monotonic()
                if result or left <= 0:
                    return result or None
                self._book.changed.wait(left)

    def wait_alert(
        self,
        receiver: str,
        status: str,
        since: float = 0.0,
        timeout: float = 30.0,
        **labels: str,
    ) -> Notification | None:
        """The first notification to `receiver` received at or after `since` (monotonic)
        that holds an alert with these labels in this status (firing, resolved)."""

        def first(seen: list[Notification]) -> Notification | None:
            for n in seen:
                if n.receiver == receiver and n.received >= since and n.alerts_matching(status, **labels):
                    return n
            return None

        return self.wait(first, timeout)

    def count_alerts(self, receiver: str | None = None, status: str | None = None, **labels: str) -> int:
        """How many alerts with these labels (and status) all notifications carried."""
        return sum(len(n.alerts_matching(status, **labels)) for n in self.notifications(receiver))
