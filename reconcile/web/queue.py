"""The console's background runs: what each is doing, its live progress, and the queue of those
that wait for a lock another run holds.

A run joins the queue when it is started (so, in the order plans were approved), holds its
place while its lock is taken by someone else, and leaves when it ends. Per job the first to
join goes first: a later run does not even ask for the lock while an earlier one of its job is
waiting. When a console run ends, every waiter is woken at once (``wake``), so the next starts
without waiting for its next poll. The queue lives in memory: after a restart the console
starts its unfinished runs again in the order they were approved
(:meth:`reconcile.web.console.Console.resume_unfinished`).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from pathlib import Path


@dataclasses.dataclass(frozen=True, slots=True)
class Standing:
    """Where a queued run stands: the console run it waits behind (None: the lock is held by a
    run outside this console, the command line or cron) and its place in its job's line."""

    behind: str | None
    position: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    ticket: int
    job: str
    target: tuple[str, str]
    """What the job sends to (operation, base URL): runs of two jobs with the same target can
    hold each other's locks, whatever the locks are keyed on."""


class RunQueue:
    """Thread-safe: the console's request threads join, its run threads wait and leave."""

    def __init__(self) -> None:
        self.wake = threading.Condition()
        self._tickets = itertools.count()
        self._waiting: dict[str, _Entry] = {}
        self._holding: dict[str, _Entry] = {}

    def join(self, plan_run_id: str, job: str, target: tuple[str, str]) -> None:
        with self.wake:
            self._holding.pop(plan_run_id, None)
            self._waiting[plan_run_id] = _Entry(next(self._tickets), job, target)

    def first_in_line(self, plan_run_id: str) -> bool:
        """No earlier run of the same job is waiting: this one may ask for the lock."""
        with self.wake:
            mine = self._waiting.get(plan_run_id)
            if mine is None:
                return True
            return not any(
                e.job == mine.job and e.ticket < mine.ticket for e in self._waiting.values()
            )

    def started(self, plan_run_id: str) -> None:
        """The run holds its lock now."""
        with self.wake:
            entry = self._waiting.pop(plan_run_id, None)
            if entry is not None:
                self._holding[plan_run_id] = entry

    def left(self, plan_run_id: str) -> None:
        """The run ended (or never got its lock): the next in line is woken."""
        with self.wake:
            self._waiting.pop(plan_run_id, None)
            self._holding.pop(plan_run_id, None)
            self.wake.notify_all()

    def standing(self, plan_run_id: str) -> Standing | None:
        """Where a waiting run stands (None: it is not waiting)."""
        with self.wake:
            mine = self._waiting.get(plan_run_id)
            if mine is None:
                return None
            position = 1 + sum(
                e.job == mine.job and e.ticket < mine.ticket for e in self._waiting.values()
            )
            holders = sorted(
                (e.job != mine.job, e.ticket, plan)
                for plan, e in self._holding.items()
                if e.job == mine.job or e.target == mine.target
            )
            return Standing(holders[0][2] if holders else None, position)

    def busy(self, plan_run_id: str) -> bool:
        """The run is waiting or running in this console now."""
        with self.wake:
            return plan_run_id in self._waiting or plan_run_id in self._holding


@dataclasses.dataclass(frozen=True, slots=True)
class BackgroundRun:
    """An approved plan the console ran (or is running)."""

    plan_run_id: str
    state: str  # queued (behind another run's lock), running, finished, failed
    started_by: str
    started_at: str
    real_run_id: str | None
    results: Path
    exit_code: int | None
    resumed: str | None
    error: str | None

    @property
    def report(self) -> Path:
        return self.results.with_name(f"{self.results.stem}.report.html")


class LiveCounts:
    """Live counts per community and status of the runs in progress, shown as their progress
    (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, dict[str, int]]] = {}

    def start(self, plan_run_id: str) -> None:
        with self._lock:
            self._counts[plan_run_id] = {}

    def add(self, plan_run_id: str, community: str, status: str) -> None:
        with self._lock:
            per = self._counts.setdefault(plan_run_id, {}).setdefault(community, {})
            per[status] = per.get(status, 0) + 1

    def of(self, plan_run_id: str) -> dict[str, dict[str, int]]:
        with self._lock:
            return {c: dict(v) for c, v in self._counts.get(plan_run_id, {}).items()}
