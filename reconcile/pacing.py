"""Per-community request pacing: never more than the configured rate in any one-second window.

Evenly spaced slots (no start-up burst, unlike a leaky bucket that starts full), a sliding window
of the last sends as a hard cap, a pause that holds the whole community after a 429, and an
adaptive rate: halved on each 429, recovering slowly towards the configured rate on successes.
aiolimiter was not used: its start-up burst breaks the one-second rule and it has neither pause
nor adaptive rate.
"""

from __future__ import annotations

import collections
import math
import time

import anyio

MIN_RATE = 0.1
DECREASE_FACTOR = 0.5
#: Share of the configured rate regained per successful answer.
RECOVERY_STEP = 0.02


class Pacer:
    def __init__(self, rate_per_second: float) -> None:
        self.configured = rate_per_second
        self.rate = rate_per_second
        self._cap = max(1, math.floor(rate_per_second))
        self._sent: collections.deque[float] = collections.deque(maxlen=self._cap)
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        """Wait for this community's next send slot."""
        async with self._lock:
            while True:
                now = time.monotonic()
                ready = max(now, self._next, self._paused_until)
                if len(self._sent) == self._cap:
                    # Strictly more than one second after the send `cap` sends ago.
                    ready = max(ready, self._sent[0] + 1.0 + 1e-3)
                if ready <= now:
                    break
                await anyio.sleep(ready - now)
            self._sent.append(now)
            self._next = now + 1.0 / self.rate

    def pause(self, seconds: float) -> None:
        """Hold every request of the community (a 429's Retry-After), and slow down."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self.rate = max(MIN_RATE, self.rate * DECREASE_FACTOR)

    def succeeded(self) -> None:
        """Recover slowly towards the configured rate."""
        if self.rate < self.configured:
            self.rate = min(self.configured, self.rate + self.configured * RECOVERY_STEP)
