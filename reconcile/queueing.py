"""Approved work waits, it is never wasted: a run whose lock another run holds can
be **queued** until the lock frees instead of failing at once.

:func:`held` takes a run's locks with :func:`reconcile.locks.job_lock`, whatever they are keyed
on, and never a lock of its own: with a :class:`Wait` it asks again with a bounded backoff
(:data:`FIRST_POLL_SECONDS`, growing by half each time to :data:`MAX_POLL_SECONDS`), or sooner
when ``wake`` is notified (the console, when one of its runs ends), until the locks are taken
or the wait's deadline passes; then it raises RunLockedError as an unqueued run does, nothing
sent. The lock is only *asked*, never forced: a waiting run sends nothing before it holds it.

Every queueing, start and refusal is logged (``run.queued``, ``run.lock_taken``,
``run.lock_refused``); for a run of an approved plan it is also recorded in the audit chain,
as actions of the plan (``queued``, ``apply started``, ``apply refused``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Collection, Iterator

import structlog

from reconcile import approval, locks
from reconcile.audit import store
from reconcile.database import Storage
from reconcile.exceptions import ConfigError, RunLockedError
from reconcile.job import Job
from reconcile.run_types import DEFAULT_WAIT_SECONDS, RunOptions, Wait

log = structlog.get_logger("reconcile.queue")

FIRST_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 2.0
#: What the queue says of a run that an earlier queued run of the same console job goes before.
EARLIER_IN_LINE = "an earlier approved run of this job is queued first"


def wait_from(wait: bool, timeout: float | None) -> Wait | None:
    """``--wait [--wait-timeout SECONDS]`` as a Wait (None: the run fails at once)."""
    if timeout is not None and not wait:
        raise ConfigError("--wait-timeout SECONDS goes with --wait")
    if not wait:
        return None
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--wait-timeout {timeout:g}: give a number of seconds over 0")
    return Wait(timeout_seconds=DEFAULT_WAIT_SECONDS if timeout is None else timeout)


@dataclasses.dataclass(frozen=True, slots=True)
class AuditActions:
    """Where a run's queueing, start and refusal go besides the log: a plan run's audit chain."""

    storage: Storage
    plan_run_id: str | None
    user: str

    def action(self, action: str, detail: str) -> None:
        if self.plan_run_id is None:
            return
        with store(self.storage) as audit:
            audit.record_action(self.plan_run_id, self.user, action, detail)


def run_lock(job: Job, options: RunOptions) -> contextlib.AbstractContextManager[None]:
    """A real run's locks, queued for with ``options.wait``: a plan's run no later than its
    approval's expiry, its queueing, start or refusal recorded as actions of the plan."""
    wait, plan = options.wait, options.plan
    if wait is not None and wait.cancel is None and options.cancel is not None:
        wait = dataclasses.replace(wait, cancel=options.cancel)  # api.run(cancel=...) stops it
    if wait is not None and plan is not None:
        left = approval.expires_at(plan.recorded, job) - dt.datetime.now(dt.UTC)
        wait = wait.bounded(left.total_seconds(), "the approval's lifetime (approval_ttl_hours)")
    plan_run_id = plan.recorded.run_id if plan is not None else None
    user = approval.acting_user(options.environ or None)
    return held(job, options.communities, wait, AuditActions(job.storage, plan_run_id, user))


@contextlib.contextmanager
def held(
    job: Job, communities: Collection[str] | None, wait: Wait | None, recorder: AuditActions
) -> Iterator[None]:
    """The run's locks held until the block ends; with ``wait``, queued until they free."""
    with contextlib.ExitStack() as stack:
        _acquire(stack, job, communities, wait, recorder)
        yield


def _acquire(
    stack: contextlib.ExitStack,
    job: Job,
    communities: Collection[str] | None,
    wait: Wait | None,
    recorder: AuditActions,
) -> None:
    began = time.monotonic()
    delay, why = FIRST_POLL_SECONDS, ""
    while True:
        if wait is None or wait.may_try is None or wait.may_try():
            try:
                stack.enter_context(locks.job_lock(job, communities))
            except RunLockedError as exc:
                if wait is None:
                    _refused(recorder, str(exc))
                    raise
                why = _queued(recorder, wait, why, str(exc))
            else:
                _started(recorder, wait, time.monotonic() - began if why else 0.0)
                return
        else:
            assert wait is not None
            why = _queued(recorder, wait, why, EARLIER_IN_LINE)
        waited = time.monotonic() - began
        cancelled = wait.cancel is not None and wait.cancel.is_set()
        if waited >= wait.timeout_seconds or cancelled:
            message = (
                f"stopped waiting for the run lock after {waited:.0f} s (cancelled)"
                if cancelled
                else f"waited {waited:.0f} s for the run lock, the most {wait.until} allows "
                f"({wait.timeout_seconds:g} s)"
            ) + f"; nothing was sent. Still in the way: {why}"
            _refused(recorder, message)
            raise RunLockedError(message)
        _pause(wait, min(delay, wait.timeout_seconds - waited))
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


def _pause(wait: Wait, seconds: float) -> None:
    if wait.wake is None:
        time.sleep(max(seconds, 0.0))
        return
    with wait.wake:
        wait.wake.wait(max(seconds, 0.0))


def _queued(recorder: AuditActions, wait: Wait, before: str, why: str) -> str:
    """Log and record the first time a run is queued (``before`` empty); the reason now."""
    if not before:
        log.info("run.queued", plan=recorder.plan_run_id, user=recorder.user, behind=why)
        recorder.action("queued", why)
        if wait.on_queued is not None:
            wait.on_queued(why)
    return why


def _started(recorder: AuditActions, wait: Wait | None, waited: float) -> None:
    log.info("run.lock_taken", plan=recorder.plan_run_id, waited_seconds=round(waited, 1))
    detail = f"after waiting {waited:.0f} s in the queue" if waited else "the lock was free"
    recorder.action("apply started", detail)
    if wait is not None and wait.on_started is not None:
        wait.on_started(waited)


def _refused(recorder: AuditActions, message: str) -> None:
    log.warning("run.lock_refused", plan=recorder.plan_run_id, error=message)
    recorder.action("apply refused", message)
