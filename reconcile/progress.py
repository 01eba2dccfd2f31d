"""Progress while sending: a bar per community on a terminal, a log line every few seconds
otherwise (cron), nothing with --quiet."""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Mapping
from types import TracebackType

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from reconcile.outcome import Status

log = structlog.get_logger("reconcile.progress")
LOG_EVERY_SECONDS = 5.0


class ProgressReporter:
    def __init__(
        self,
        totals: Mapping[str, int],
        *,
        quiet: bool = False,
        tty: bool | None = None,
        log_every: float = LOG_EVERY_SECONDS,
        console: Console | None = None,
    ) -> None:
        self.totals = dict(totals)
        self.done: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[tuple[str, str]] = collections.Counter()
        self.quiet = quiet
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self.log_every = log_every
        self.console = console or Console(stderr=True)
        self._last_log = time.monotonic()
        self._started = time.monotonic()

    def __enter__(self) -> ProgressReporter:
        if self.tty and not self.quiet:
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            for community, total in self.totals.items():
                self._tasks[community] = self._bars.add_task(community, total=total, rate="")
            self._bars.start()
        return self

    def __call__(self, community: str, status: Status) -> None:
        self.done[community] += 1
        self.statuses[(community, status.value)] += 1
        if self._bars is not None:
            elapsed = max(time.monotonic() - self._started, 1e-9)
            rate = f"{self.done[community] / elapsed:.1f} rows/s"
            self._bars.update(self._tasks[community], advance=1, rate=rate)
            return
        now = time.monotonic()
        if not self.quiet and now - self._last_log >= self.log_every:
            self._last_log = now
            self._log(now)

    def _log(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        for community, total in self.totals.items():
            done = self.done[community]
            rate = done / elapsed
            log.info(
                "run.progress",
                community=community,
                done=done,
                total=total,
                rows_per_second=round(rate, 2),
                eta_seconds=round((total - done) / rate, 1) if rate else None,
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()
