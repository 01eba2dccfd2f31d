"""The console's "Verify now": a read-back of a run the console applied, in a background
thread, through the same library call as ``reconcile verify RUN_ID`` (the verify file, the
``verification`` record in the audit chain, the run's report), one at a time per run.

Only what is in progress is kept here (in memory: a verification sends only GETs, so one cut
short by a restart is simply made again); every finished one is read back from the audit chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import structlog

from reconcile import approval
from reconcile.exceptions import ReconcileError
from reconcile.job import Job
from reconcile.verify_command import verify_target
from reconcile.web.queue import BackgroundRun
from reconcile.web.uploads import Upload
from reconcile.web.users import User

if TYPE_CHECKING:
    from reconcile.verify_record import VerificationRecord

log = structlog.get_logger("reconcile.web")

#: What the audit chain's records of console verifications name as their source.
SOURCE = "console Verify now"


class CannotVerify(Exception):
    """A verification cannot start now (the run page says why; HTTP 409)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Verifying:
    """A verification of a run the console started: in progress, or stopped on an error."""

    started_by: str
    started_at: str
    error: str | None = None
    """None while it runs; why it stopped otherwise (a finished one is in the audit chain)."""


def refusal(background: BackgroundRun | None) -> str | None:
    """Why the run of a plan cannot be read back (None: it can)."""
    if background is None:
        return (
            "This plan has not been run: its check was a dry run, nothing was sent, so there "
            "is nothing to read back."
        )
    if background.state == "queued":
        return "The run is queued behind another: nothing has been sent yet."
    if background.state == "running":
        return "The run is still sending: verify it once it has finished."
    if background.real_run_id is None:
        return "The run stopped before sending anything: there is nothing to read back."
    return None


class Runs(Protocol):
    """What a verification needs of the console (reconcile.web.console.Console is one)."""

    def job(self, name: str) -> Job: ...

    def background(self, plan_run_id: str) -> BackgroundRun | None: ...

    def record(self, job: Job, run_id: str, user: User, action: str, detail: str = "") -> None:
        """An action on the run, in its job's audit log."""

    def shown(self, message: str, name: str, stored: Path, job: Job) -> str:
        """``message`` with the upload named as its user knows it, no server folder in it."""


class Verifier:
    """Starts and tracks the console's verifications (thread-safe)."""

    def __init__(self, console: Runs, environ_of: Callable[[User], Mapping[str, str]]) -> None:
        self.console, self._environ_of = console, environ_of
        self._lock = threading.Lock()
        self._states: dict[str, Verifying] = {}
        self._threads: dict[str, threading.Thread] = {}

    def state(self, plan_run_id: str) -> Verifying | None:
        with self._lock:
            return self._states.get(plan_run_id)

    def running(self, plan_run_id: str) -> bool:
        found = self.state(plan_run_id)
        return found is not None and found.error is None

    def start(self, upload: Upload, user: User) -> None:
        """Read back the run of ``upload``'s plan in a background thread; CannotVerify when
        it was never run (a dry run), is still running, or is being verified already."""
        background = self.console.background(upload.run_id)
        reason = refusal(background)
        if reason is not None:
            raise CannotVerify(reason)
        assert background is not None and background.real_run_id is not None
        with self._lock:
            current = self._states.get(upload.run_id)
            if current is not None and current.error is None:
                raise CannotVerify(
                    f"A verification of this run is already running (started by "
                    f"{current.started_by} at {_when(current.started_at)}): wait for it to end, "
                    "then verify again if you need to."
                )
            now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self._states[upload.run_id] = Verifying(user.name, now)
            thread = threading.Thread(
                target=self._verify,
                args=(upload, user, background),
                name=f"verify-{upload.run_id}",
            )
            self._threads[upload.run_id] = thread
        thread.start()

    def _verify(self, upload: Upload, user: User, background: BackgroundRun) -> None:
        job = self.console.job(upload.job)
        self.console.record(job, upload.run_id, user, "verify", "started")
        out = background.results.with_name(
            f"{background.results.stem}.verify-{secrets.token_hex(4)}.csv"
        )
        error = None
        try:
            _, entry = verify_target(
                job,
                str(background.real_run_id),
                out,
                sample_percent=None,
                environ=self._environ_of(user),
                source=SOURCE,
                quiet=True,
            )
            self.console.record(job, upload.run_id, user, "verify", f"ended: {_counts(entry)}")
        except ReconcileError as exc:
            # The message names the file as its user knows it, never where the server keeps it.
            error = self.console.shown(str(exc), upload.original_name, upload.stored, job)
        except Exception as exc:  # a bug or a broken environment: shown, and logged in full
            log.exception("console.verify_crashed", plan=upload.run_id)
            error = f"stopped on an unexpected error ({type(exc).__name__}); see the server log"
        with self._lock:
            if error is None:
                self._states.pop(upload.run_id, None)  # finished: the audit chain has it
            else:
                self._states[upload.run_id] = dataclasses.replace(
                    self._states[upload.run_id], error=error
                )
        if error is not None:
            self.console.record(job, upload.run_id, user, "verify", f"stopped: {error}")

    def latest(self, upload: Upload, background: BackgroundRun | None) -> VerificationRecord | None:
        """The run's latest verification in the audit chain (any source), or None."""
        if background is None or background.real_run_id is None:
            return None
        with approval.store(self.console.job(upload.job).storage) as audit:
            found = audit.verifications(background.real_run_id)
        return cast("VerificationRecord", found[-1]) if found else None

    def close(self) -> None:
        for thread in list(self._threads.values()):
            thread.join(timeout=30)


def _counts(entry: VerificationRecord) -> str:
    counts = ", ".join(f"{s} {n}" for s, n in entry["counts"].items()) or "no rows"
    return f"{counts}; {entry['reads']} reads; exit {entry['exit_code']}"


def _when(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
