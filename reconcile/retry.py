"""The retry policy: one value built from the job, and pure decisions over it.

:class:`RetryPolicy` holds every knob. The send loop (dispatch.py) asks :func:`next_step` after
every attempt and does what it says: ``Retry(wait)`` (back off, counted against
``max_attempts``), ``Pause(wait)`` (a 429: the community waits, if
:meth:`RetryPolicy.charge_rate_limit` finds the wait within the 429 budget) or ``Done(...)``
(the request's outcome); each answered row goes through the reject guard
(:meth:`RetryPolicy.count_answer`, :meth:`RetryPolicy.guard_stop`). Nothing here sleeps, sends
or reads a clock: times come in as values, so the policy is tested as tables
(tests/test_retry.py).

What each answer and fault leads to is written once, for the people who run the tool, in
README.md: "How rows are sent" and its "Network faults".
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from reconcile.job import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_GUARD_WINDOW,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_REJECT_RATE,
    DEFAULT_RATE_LIMIT_BUDGET_SECONDS,
    Job,
)
from reconcile.operations.base import Classified, Verdict
from reconcile.outcome import Status

BACKOFF_CAP_SECONDS = 30.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0
MAYBE_APPLIED = "an earlier attempt may have applied it: check the record before re-running"
NOT_REPEATED = "outcome unknown: check the order before re-running"

Jitter = Callable[[float], float]
"""A wait in [0, ceiling] for a backoff whose longest wait is ``ceiling``."""


def no_jitter(ceiling: float) -> float:
    """The ceiling itself: waits a test can state exactly."""
    return ceiling


def full_jitter(rng: random.Random) -> Jitter:
    """Uniform in [0, ceiling] (full jitter): retries of many rows do not arrive together."""
    return lambda ceiling: rng.uniform(0, ceiling)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitCharge:
    """A 429's wait charged to its community's budget."""

    held_seconds: float
    """How long 429s have held the community, this wait included when it fits."""
    stop: str | None = None
    """Past the budget: why the community stops (the wait is then neither taken nor charged)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RejectTally:
    """The reject guard's count over a community's first ``guard_window`` answered rows."""

    answered: int = 0
    rejected: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Every knob of the retry policy: the job's (:meth:`from_job`), the run's ``--force`` and
    the jitter. The defaults are the job file's."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts per request before it fails; 429s are not counted."""
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS
    """The longest wait after the first counted attempt; it doubles with each one after."""
    backoff_cap_seconds: float = BACKOFF_CAP_SECONDS
    jitter: Jitter = no_jitter
    """How a backoff wait is drawn below its ceiling (:func:`full_jitter` in runs)."""
    default_retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS
    """A 429's pause when it has no Retry-After, and the least any 429 charges to the budget."""
    rate_limit_budget_seconds: float = DEFAULT_RATE_LIMIT_BUDGET_SECONDS
    """How long 429s may hold one community in a run before it stops."""
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    """The reject guard: a community stops when more than this share ..."""
    guard_window: int = DEFAULT_GUARD_WINDOW
    """... of its first this many answered rows are rejected."""
    force: bool = False
    """Re-send even a request that must not be repeated (a refund) after an answer or a fault
    that may mean it was applied (``--force``)."""

    @classmethod
    def from_job(cls, job: Job, *, jitter: Jitter, force: bool = False) -> RetryPolicy:
        """The policy a run of ``job`` follows."""
        return cls(
            max_attempts=job.max_attempts,
            backoff_base_seconds=job.backoff_base_seconds,
            jitter=jitter,
            rate_limit_budget_seconds=job.rate_limit_budget_seconds,
            max_reject_rate=job.max_reject_rate,
            guard_window=job.guard_window,
            force=force,
        )

    def backoff(self, counted: int) -> float:
        """Full jitter over an exponential ceiling: attempt n waits up to base * 2**(n-1)."""
        ceiling = self.backoff_base_seconds * 2 ** (counted - 1)
        return self.jitter(min(self.backoff_cap_seconds, ceiling))

    def may_resend(self, *, repeatable: bool) -> bool:
        """Whether a request may go again after a result that may mean it was applied: only
        one that sets values (sending it twice changes nothing), or any under ``--force``."""
        return repeatable or self.force

    def pause_for(self, retry_after: float | None) -> float:
        """How long a 429 holds the community: its Retry-After, else the default."""
        return self.default_retry_after_seconds if retry_after is None else retry_after

    def charge_rate_limit(self, held_seconds: float, wait: float) -> RateLimitCharge:
        """Charge a 429's ``wait`` (at least the default Retry-After) to a community that 429s
        have held ``held_seconds`` so far."""
        charged = max(wait, self.default_retry_after_seconds)
        budget = self.rate_limit_budget_seconds
        if held_seconds + charged <= budget:
            return RateLimitCharge(held_seconds=held_seconds + charged)
        return RateLimitCharge(
            held_seconds=held_seconds,
            stop=(
                f"rate limited (429) for {held_seconds:.0f} s, and the API asks to wait "
                f"{wait:.0f} s more: over rate_limit_budget_seconds = {budget:g}; run again later"
            ),
        )

    def count_answer(self, tally: RejectTally, verdict: Verdict) -> RejectTally:
        """The tally after one more answer: applied and rejected rows count, up to
        ``guard_window`` of them; other answers (429, 5xx, a refused key) do not."""
        if (
            verdict not in (Verdict.APPLIED, Verdict.REJECTED)
            or tally.answered >= self.guard_window
        ):
            return tally
        return RejectTally(
            answered=tally.answered + 1,
            rejected=tally.rejected + (verdict is Verdict.REJECTED),
        )

    def guard_stop(self, tally: RejectTally) -> str | None:
        """Why the community stops, when its rejections pass the guard: a systematic mistake
        should cost a few rows, not the whole file."""
        window = self.guard_window
        if tally.rejected <= self.max_reject_rate * window:
            return None
        return (
            f"stopped after {tally.rejected} of the first {tally.answered} answered rows were "
            f"rejected (over {self.max_reject_rate:.0%} of {window}): "
            "check the file for a systematic mistake"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Attempts:
    """What a request's attempts so far have shown."""

    sent: int = 0
    """Requests that left the process (the results' ``attempts``; 429s included)."""
    counted: int = 0
    """Attempts counted against ``max_attempts`` (429s are not)."""
    maybe_applied: bool = False
    """An earlier attempt may have reached the API and applied the request."""
    last_status: int | None = None
    last_error: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Answered:
    """An HTTP answer, classified by the operation."""

    status: int
    verdict: Classified
    retry_after: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NoAnswer:
    """No complete HTTP answer; ``maybe_applied`` unless the connection was never made."""

    error: str
    maybe_applied: bool


Result = Answered | NoAnswer


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    wait: float


@dataclasses.dataclass(frozen=True, slots=True)
class Pause:
    wait: float


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    status: Status
    http_status: int | None
    error: str | None
    attempts: int
    maybe_applied: bool = False
    """Failed, but an attempt may have applied it: the ledger keeps it as unknown."""
    stop_community: str | None = None
    """The community's remaining requests are not sent, for this reason."""


Step = Retry | Pause | Done


def may_have_applied(message: str) -> str:
    """The one wording of 'an earlier attempt may have applied it'."""
    return f"{message}; {MAYBE_APPLIED}"


def record(attempts: Attempts, result: Result) -> Attempts:
    """The attempts after one more request and its result."""
    if isinstance(result, NoAnswer):
        return dataclasses.replace(
            attempts,
            sent=attempts.sent + 1,
            counted=attempts.counted + 1,
            maybe_applied=attempts.maybe_applied or result.maybe_applied,
            last_status=None,
            last_error=result.error,
        )
    transient = result.verdict.verdict is Verdict.TRANSIENT
    return dataclasses.replace(
        attempts,
        sent=attempts.sent + 1,
        counted=attempts.counted + (result.verdict.verdict is not Verdict.RATE_LIMITED),
        maybe_applied=attempts.maybe_applied or transient,
        last_status=result.status,
        last_error=result.verdict.message,
    )


def next_step(result: Result, attempts: Attempts, *, repeatable: bool, policy: RetryPolicy) -> Step:
    """What follows ``result``; ``attempts`` already include it (:func:`record`)."""
    if isinstance(result, NoAnswer):
        if result.maybe_applied and not policy.may_resend(repeatable=repeatable):
            return _done(attempts, Status.UNKNOWN, f"{NOT_REPEATED} ({result.error})")
        return _again(attempts, policy)
    verdict, status = result.verdict.verdict, result.status
    message = result.verdict.message
    if verdict is Verdict.APPLIED:
        return Done(Status.APPLIED, status, None, attempts.sent)
    if verdict is Verdict.REJECTED:
        if attempts.maybe_applied and status == 409:
            return _done(attempts, Status.UNKNOWN, may_have_applied(message))
        return _done(attempts, Status.REJECTED, message)
    if verdict is Verdict.AUTH:
        reason = f"community key rejected with {status}"
        return Done(
            Status.FAILED, status, f"{reason}: {message}", attempts.sent, stop_community=reason
        )
    if verdict is Verdict.RATE_LIMITED:
        return Pause(policy.pause_for(result.retry_after))
    if verdict is Verdict.TRANSIENT and not policy.may_resend(repeatable=repeatable):
        return _done(attempts, Status.UNKNOWN, f"{NOT_REPEATED} (HTTP {status}: {message})")
    return _again(attempts, policy)  # TRANSIENT (repeatable) or NOT_PROCESSED


def stopped(attempts: Attempts, reason: str) -> Done:
    """The run or the community stopped before the next attempt."""
    if attempts.sent == 0:
        return Done(Status.SKIPPED, None, f"not sent: {reason}", 0)
    error = f"stopped ({reason}) after {attempts.sent} attempt(s): {attempts.last_error}"
    if attempts.maybe_applied:
        return _done(attempts, Status.UNKNOWN, may_have_applied(error))
    return _done(attempts, Status.FAILED, error)


def rate_limit_spent(attempts: Attempts, reason: str, message: str) -> Done:
    """429s held the community past its budget: this request ends here."""
    error = f"{reason}: {message}"
    if attempts.maybe_applied:
        return _done(attempts, Status.UNKNOWN, may_have_applied(error))
    return _done(attempts, Status.FAILED, error)


def interrupted(attempts: Attempts) -> Done:
    """Cancelled while in flight (Ctrl-C past the grace period)."""
    if attempts.sent == 0:
        return Done(Status.SKIPPED, None, "not sent: run interrupted", 0)
    return _done(attempts, Status.UNKNOWN, f"run interrupted while in flight: {MAYBE_APPLIED}")


def _again(attempts: Attempts, policy: RetryPolicy) -> Step:
    if attempts.counted >= policy.max_attempts:
        message = f"gave up after {attempts.sent} attempts: {attempts.last_error}"
        if attempts.maybe_applied:
            message += f" ({MAYBE_APPLIED})"
        return Done(
            Status.FAILED,
            attempts.last_status,
            message,
            attempts.sent,
            maybe_applied=attempts.maybe_applied,
        )
    return Retry(policy.backoff(attempts.counted))


def _done(attempts: Attempts, status: Status, error: str) -> Done:
    return Done(status, attempts.last_status, error, attempts.sent)
