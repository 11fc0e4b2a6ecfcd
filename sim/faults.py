"""Faults as the database's clients meet them: windows in which the server is down, and windows in
which the network holds, slows or loses messages. `durosim.sim.db` consults them on every call
of a run that has any; a run without faults never does.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

# Linux's minimum TCP retransmission timeout (TCP_RTO_MIN, include/net/tcp.h): a lost segment of
# an established connection with a short RTT is resent after 200 ms, then 400, 800... up to
# TCP_RTO_MAX, 120 s, and after tcp_retries2 (15) retransmissions Linux gives up on the
# connection. Not modelled: that reset; a message lost that often arrives after the 15th.
TCP_RTO_MIN_S = 0.2
TCP_RTO_MAX_S = 120.0
TCP_RETRIES2 = 15


class Outages:
    """The database server's down windows, [start, end) each, in time order, and for each
    whether a connect is refused (sqlx retries it until its acquire deadline) or fails at once
    (a proxy or load balancer in front accepts it and closes it: sqlx gives up)."""

    def __init__(self, windows: list[tuple[float, float, bool]]):
        self.windows = sorted(windows)
        self._starts = [start for start, _, _ in self.windows]

    def _window(self, t: float) -> tuple[float, float, bool] | None:
        k = bisect_right(self._starts, t) - 1
        if k >= 0 and t < self.windows[k][1]:
            return self.windows[k]
        return None

    def down_until(self, t: float) -> float | None:
        """When the server is back, if it is down at `t`; None if it is up."""
        window = self._window(t)
        return None if window is None else window[1]

    def refused(self, t: float) -> bool:
        """Whether a connect at `t`, while the server is down, is refused (not failed at once)."""
        window = self._window(t)
        return window is None or window[2]

    def epoch(self, t: float) -> int:
        """How many outages have begun by `t`: a connection opened in an earlier epoch is
        broken (the server's restart ended its backend)."""
        return bisect_right(self._starts, t)


@dataclass(frozen=True, slots=True)
class LinkWindow:
    start_s: float
    end_s: float
    added_s: float | None = None
    """Added to the round trip (half each way); None with no loss: every message is held."""
    loss: float = 0.0
    """Share of the messages lost, each resent after TCP's retransmission timeout."""


class LinkFaults:
    """One link's fault windows: `cross(t, one_way)` is when a message sent at `t` arrives."""

    def __init__(self, windows: list[LinkWindow], uniform: Callable[[], float]):
        self.windows = sorted(windows, key=lambda w: w.start_s)
        self.uniform = uniform

    def cross(self, t: float, one_way: float) -> float:
        for w in self.windows:
            if w.start_s <= t < w.end_s:
                if w.added_s is not None:
                    return t + one_way + w.added_s / 2.0
                if w.loss:
                    rto = TCP_RTO_MIN_S
                    for _ in range(TCP_RETRIES2):
                        if self.uniform() >= w.loss:
                            break
                        t += rto
                        rto = min(rto * 2.0, TCP_RTO_MAX_S)
                    return t + one_way
                return w.end_s + one_way  # held until the link is back
        return t + one_way
