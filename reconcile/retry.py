"""The retry policy, as pure functions: what follows one attempt's result.

The send loop (dispatch.py) asks :func:`next_step` after every attempt and does what it says:
``Retry(wait)`` (back off, counted against ``max_attempts``), ``Pause(wait)`` (a 429: the
community waits, not counted) or ``Done(...)`` (the request's outcome). Nothing here sleeps,
sends or reads a clock, so the whole policy is tested as a table (tests/test_retry.py):

- 2xx applied; 400/404/409/422 rejected, never retried (a 409 after an earlier attempt that may
  have applied is ``unknown``: that attempt may be what the API now refuses);
- 401/403 failed, and the community stops;
- 429: pause for Retry-After (1 s when absent), not counted;
- 5xx, timeouts, cut connections, answers that are not HTTP: the request may have been applied.
  A repeatable request is retried with full-jitter backoff up to ``max_attempts``; any other
  (a coin refund) ends ``unknown`` at once, unless ``--force``;
- a connection never made, 408, 425: nothing was acted on: retried, whatever the request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reconcile.operations.base import Classified, Verdict
from reconcile.outcome import Status

BACKOFF_CAP_SECONDS = 30.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0
MAYBE_APPLIED = "an earlier attempt may have applied it: check the record before re-running"
NOT_REPEATED = "outcome unknown: check the order before re-running"


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    max_attempts: int
    backoff_base_seconds: float
    force: bool = False
    jitter: Callable[[float], float] = lambda ceiling: ceiling
    """A wait in [0, ceiling]: ``random.uniform(0, ceiling)`` in runs (full jitter)."""

    def backoff(self, counted: int) -> float:
        """Full jitter over an exponential ceiling: attempt n waits up to base * 2**(n-1)."""
        return self.jitter(min(BACKOFF_CAP_SECONDS, self.backoff_base_seconds * 2 ** (counted - 1)))


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


def next_step(result: Result, attempts: Attempts, *, repeatable: bool, policy: Policy) -> Step:
    """What follows ``result``; ``attempts`` already include it (:func:`record`)."""
    if isinstance(result, NoAnswer):
        if result.maybe_applied and not repeatable and not policy.force:
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
        wait = DEFAULT_RETRY_AFTER_SECONDS if result.retry_after is None else result.retry_after
        return Pause(wait)
    if verdict is Verdict.TRANSIENT and not repeatable and not policy.force:
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


def _again(attempts: Attempts, policy: Policy) -> Step:
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
