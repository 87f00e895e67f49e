"""The edge's own flow control: how many messages of its main session it holds received
and not yet acknowledged.

Why not the broker's: Mosquitto's `max_inflight_messages` (100 deployed) bounds what it
sends unacknowledged to a session that is connected, but not a backlog queued while the
session was away: to a session back with a queue, Mosquitto 2.0 sends about another
window's worth for each PUBACK (measured with Mosquitto 2.0.11 and a 5,000-message
backlog: a client that never acknowledges gets 100, one that acknowledges its first
message only gets 200, its first ten 1,100, one that acknowledges everything every 50 ms
has up to 1,845 unacknowledged; tests/edge/test_window.py holds it). An edge back from an
outage would take its session's whole queue into memory (up to `max_queued_messages`,
100,000 deployed), in the receiving process and in the commit loop's inbox.

So paho's thread waits, before it takes a message in, until fewer than the window are
held; a message leaves the window when it is acknowledged (after its commit). The window
is four groups (`commit_max_messages`): the one being committed, the next one waiting in
the inbox, and the ones on their way there. With two, the commit loop often found its
next group short (a 50,000-message drain in 70 groups, not 57); with four the drain is
as fast as without a window, and the edge's peak RSS 68-71 MB where it was 85-93
(bench/edge_throughput.py --messages 50000, docs/PERFORMANCE.md).

The wait is bounded (`patience_s`, half the keepalive): paho's thread also keeps the
connection alive, and a broker drops a session it hears nothing from for one and a half
keepalives (paho may read many packets before it checks its keepalive: one per receipt
still awaiting the broker's answer). A commit loop that acknowledges nothing for a whole
wait is stalled (a full disk): the window then stays open until the next acknowledgement
(`stalls` counts these), and what comes in meanwhile is bounded by the broker's queue,
as it was without a window. A drain in progress acknowledges a group every few tens of
milliseconds.

A message counts for the connection that delivered it (`generation`): a new connection
starts an empty window, since nothing delivered on the old one is acknowledged any more
(the broker sends it again, and it is counted again).
"""

from __future__ import annotations

import threading


def window_of(commit_max_messages: int) -> int:
    """The window of an edge whose groups hold up to `commit_max_messages`."""
    return 4 * commit_max_messages


class UnackedWindow:
    def __init__(self, limit: int, patience_s: float) -> None:
        self.limit = limit
        self.patience_s = patience_s
        self.stalls = 0  # times nothing was acknowledged for a whole wait
        self.waiting = 0  # threads waiting for room (paho's, or none)
        self.held = 0  # messages taken in and not acknowledged yet
        self._generation = 0
        self._closed = False
        self._stalled = False  # open until the next acknowledgement
        self._cond = threading.Condition()

    def enter(self, generation: int) -> None:
        """A message delivered on connection `generation` is taken in (paho's thread):
        first wait, up to `patience_s`, for room."""
        with self._cond:
            if generation != self._generation:
                self._generation = generation
                self.held = 0
            if self.held >= self.limit and not self._closed and not self._stalled:
                self.waiting += 1
                try:
                    room = self._cond.wait_for(
                        lambda: self.held < self.limit or self._closed, self.patience_s
                    )
                finally:
                    self.waiting -= 1
                if not room:
                    self.stalls += 1
                    self._stalled = True
            self.held += 1

    def release(self, generation: int, n: int) -> None:
        """`n` messages of connection `generation` were acknowledged."""
        with self._cond:
            if generation == self._generation and n:
                self.held = max(0, self.held - n)
                self._stalled = False
                self._cond.notify_all()

    def close(self) -> None:
        """Stopping: nobody waits any more (a message taken in now is not acknowledged;
        the broker keeps it for the next connection)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
