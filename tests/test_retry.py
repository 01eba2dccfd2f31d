"""The retry policy as a table: each attempt's result, for repeatable and non-repeatable
requests, and what follows (reconcile.retry, pure: no clock, no network)."""

from __future__ import annotations

import pytest

from reconcile.operations.base import Classified, Verdict
from reconcile.outcome import Status
from reconcile.retry import (
    Answered,
    Attempts,
    Done,
    NoAnswer,
    Pause,
    Result,
    Retry,
    RetryPolicy,
    Step,
    next_step,
    record,
)

POLICY = RetryPolicy(max_attempts=3, backoff_base_seconds=0.5)  # jitter = the ceiling itself


def answered(status: int, verdict: Verdict, retry_after: float | None = None) -> Answered:
    return Answered(status, Classified(verdict, f"HTTP {status}"), retry_after)


OK = answered(200, Verdict.APPLIED)
BEFORE_COMMIT_503 = answered(503, Verdict.TRANSIENT)
AFTER_COMMIT_502 = answered(502, Verdict.TRANSIENT)
TIMEOUT = NoAnswer("no answer in time", maybe_applied=True)
REFUSED = NoAnswer("could not connect", maybe_applied=False)


def decide(*results: Result, repeatable: bool = True, force: bool = False) -> Step:
    """The step after the last of ``results``, the earlier ones recorded first."""
    policy = RetryPolicy(max_attempts=3, backoff_base_seconds=0.5, force=force)
    attempts = Attempts()
    step: Step = Retry(0)
    for result in results:
        attempts = record(attempts, result)
        step = next_step(result, attempts, repeatable=repeatable, policy=policy)
    return step


@pytest.mark.parametrize(
    ("results", "repeatable", "expected"),
    [
        ((OK,), True, Done(Status.APPLIED, 200, None, 1)),
        ((answered(429, Verdict.RATE_LIMITED, 30),), False, Pause(30)),
        ((answered(429, Verdict.RATE_LIMITED),), False, Pause(1.0)),
        ((BEFORE_COMMIT_503,), True, Retry(0.5)),
        ((AFTER_COMMIT_502, AFTER_COMMIT_502), True, Retry(1.0)),
        ((TIMEOUT,), True, Retry(0.5)),
        ((REFUSED,), False, Retry(0.5)),
        ((answered(408, Verdict.NOT_PROCESSED),), False, Retry(0.5)),
        ((answered(404, Verdict.REJECTED),), True, Done(Status.REJECTED, 404, "HTTP 404", 1)),
    ],
)
def test_next_step(results: tuple[Result, ...], repeatable: bool, expected: Step) -> None:
    """One row per case: what the policy answers."""
    assert decide(*results, repeatable=repeatable) == expected


@pytest.mark.parametrize("result", [BEFORE_COMMIT_503, AFTER_COMMIT_502, TIMEOUT])
def test_a_non_repeatable_request_is_never_sent_again_after_an_uncertain_result(
    result: Result,
) -> None:
    """A 5xx cannot tell before from after the write, nor can a timeout: unknown, once."""
    step = decide(result, repeatable=False)
    assert isinstance(step, Done) and step.status is Status.UNKNOWN and step.attempts == 1
    assert step.error is not None and step.error.startswith("outcome unknown")


def test_force_retries_even_a_refund() -> None:
    assert decide(TIMEOUT, repeatable=False, force=True) == Retry(0.5)


def test_429s_do_not_count_against_max_attempts() -> None:
    limited = answered(429, Verdict.RATE_LIMITED, 1)
    assert decide(limited, limited, limited, limited, BEFORE_COMMIT_503) == Retry(0.5)


def test_giving_up_says_it_may_have_applied() -> None:
    step = decide(AFTER_COMMIT_502, AFTER_COMMIT_502, AFTER_COMMIT_502)
    assert isinstance(step, Done) and step.status is Status.FAILED and step.maybe_applied
    assert step.error is not None and "may have applied" in step.error


def test_a_409_after_a_maybe_applied_attempt_is_unknown() -> None:
    step = decide(AFTER_COMMIT_502, answered(409, Verdict.REJECTED))
    assert isinstance(step, Done) and step.status is Status.UNKNOWN


def test_a_refused_key_stops_the_community() -> None:
    step = decide(answered(401, Verdict.AUTH))
    assert isinstance(step, Done) and step.stop_community == "community key rejected with 401"


def test_policy_constant_is_the_documented_default() -> None:
    assert POLICY.backoff(1) == 0.5 and POLICY.backoff(20) == 30.0
