"""Per-community request pacing: never more than the configured rate in any one-second window.

Evenly spaced slots (no start-up burst, unlike a leaky bucket that starts full), a sliding window
of the last sends as a hard cap, a pause that holds the whole community after a 429, and an
adaptive rate: cut by a quarter on each 429, recovering slowly towards the configured rate on successes.
aiolimiter was not used: its start-up burst breaks the one-second rule and it has neither pause
nor adaptive rate.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Protocol

import anyio

MIN_RATE = 0.1
DECREASE_FACTOR = 0.75
#: Share of the configured rate regained per successful answer.
RECOVERY_STEP = 0.05
#: Slots are spaced this much wider than 1/rate, so that scheduling jitter never lands two
#: requests closer than the server's own bucket allows.
SPACING_MARGIN = 1.01
#: The sliding window is this much longer than a second: a request's arrival at the server lags
#: its send by a varying few milliseconds (a new connection's handshake), which must not let the
#: server see one request too many in a second.
WINDOW_MARGIN_SECONDS = 0.02


class Clock(Protocol):
    """Time as dispatch sees it: the real one in runs, a fake one in unit tests."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


REAL_CLOCK = RealClock()


class Pacer:
    def __init__(self, rate_per_second: float, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock
        self.configured = rate_per_second
        self.rate = rate_per_second
        self._cap = max(1, math.floor(rate_per_second))
        self._sent: collections.deque[float] = collections.deque(maxlen=self._cap)
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = anyio.Lock()

    def _try_take(self) -> float:
        """Take the slot if it is due (0.0), else return how long until it is."""
        now = self.clock.now()
        ready = max(now, self._next, self._paused_until)
        if len(self._sent) == self._cap:
            # Strictly more than one second after the send `cap` sends ago.
            ready = max(ready, self._sent[0] + 1.0 + WINDOW_MARGIN_SECONDS)
        if ready > now:
            return ready - now
        self._sent.append(now)
        self._next = now + SPACING_MARGIN / self.rate
        return 0.0

    async def acquire(self) -> None:
        """Wait for this community's next send slot (first come, first served)."""
        if not self._lock.locked() and self._try_take() == 0.0:
            return  # fast path: no waiter ahead and the slot is due; no event-loop round trip
        async with self._lock:
            while (wait := self._try_take()) > 0:
                await self.clock.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every request of the community (a 429's Retry-After), and slow down."""
        self._paused_until = max(self._paused_until, self.clock.now() + seconds)
        self.rate = max(MIN_RATE, self.rate * DECREASE_FACTOR)

    def succeeded(self) -> None:
        """Recover slowly towards the configured rate."""
        if self.rate < self.configured:
            self.rate = min(self.configured, self.rate + self.configured * RECOVERY_STEP)
