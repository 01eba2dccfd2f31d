"""The retry policy as tables: each attempt's result, for repeatable and non-repeatable
requests, and what follows; the policy built from the job; its backoff, the 429 budget and the
reject guard (reconcile.retry, pure: no clock, no network)."""

from __future__ import annotations

import dataclasses

import pytest

from reconcile.job import parse_job
from reconcile.operations.base import Classified, Verdict
from reconcile.outcome import Status
from reconcile.retry import (
    Answered,
    Attempts,
    Done,
    NoAnswer,
    Pause,
    RejectTally,
    Result,
    Retry,
    RetryPolicy,
    Step,
    interrupted,
    next_step,
    no_jitter,
    rate_limit_spent,
    record,
    stopped,
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
    """``--force`` re-sends a request that must not be repeated, after a timeout too."""
    assert decide(TIMEOUT, repeatable=False, force=True) == Retry(0.5)


def test_429s_do_not_count_against_max_attempts() -> None:
    """Four 429s then a 503 is the first counted attempt: its backoff is the first one."""
    limited = answered(429, Verdict.RATE_LIMITED, 1)
    assert decide(limited, limited, limited, limited, BEFORE_COMMIT_503) == Retry(0.5)


def test_giving_up_says_it_may_have_applied() -> None:
    """Out of attempts after answers that may have applied it: failed, and it says so."""
    step = decide(AFTER_COMMIT_502, AFTER_COMMIT_502, AFTER_COMMIT_502)
    assert isinstance(step, Done) and step.status is Status.FAILED and step.maybe_applied
    assert step.error is not None and "may have applied" in step.error


def test_a_409_after_a_maybe_applied_attempt_is_unknown() -> None:
    """A conflict after a 502 may be the earlier attempt's own write: unknown, not rejected."""
    step = decide(AFTER_COMMIT_502, answered(409, Verdict.REJECTED))
    assert isinstance(step, Done) and step.status is Status.UNKNOWN


def test_a_refused_key_stops_the_community() -> None:
    """A 401 fails the row and names why its community stops."""
    step = decide(answered(401, Verdict.AUTH))
    assert isinstance(step, Done) and step.stop_community == "community key rejected with 401"


def test_policy_constant_is_the_documented_default() -> None:
    """The backoff starts at the base and is capped at 30 s."""
    assert POLICY.backoff(1) == 0.5 and POLICY.backoff(20) == 30.0


def job(**settings: object) -> RetryPolicy:
    """The policy of a job file with ``settings`` (and the ceiling as its jitter)."""
    parsed = parse_job(
        {"operation": "purchase-history", "base_url": "https://api.example.com", **settings}
    )
    return RetryPolicy.from_job(parsed, jitter=no_jitter)


class TestFromJob:
    @pytest.mark.parametrize(
        ("settings", "expected"),
        [
            ({}, RetryPolicy()),
            ({"max_attempts": 2}, RetryPolicy(max_attempts=2)),
            ({"backoff_base_seconds": 0.01}, RetryPolicy(backoff_base_seconds=0.01)),
            ({"rate_limit_budget_seconds": 60}, RetryPolicy(rate_limit_budget_seconds=60.0)),
            (
                {"max_reject_rate": 0.2, "guard_window": 10},
                RetryPolicy(max_reject_rate=0.2, guard_window=10),
            ),
        ],
    )
    def test_every_retry_setting_of_the_job_is_in_the_policy(
        self, settings: dict[str, object], expected: RetryPolicy
    ) -> None:
        """A job's retry settings land in the policy, and a job without them gives the
        policy's own defaults: the two share one set of named defaults."""
        assert job(**settings) == expected

    @pytest.mark.parametrize("force", [False, True])
    def test_force_comes_from_the_run(self, force: bool) -> None:
        """``--force`` is the run's, not the job file's: from_job takes it as it is."""
        parsed = parse_job({"operation": "purchase-history", "base_url": "https://a.example"})
        assert RetryPolicy.from_job(parsed, jitter=no_jitter, force=force).force is force


class TestBackoff:
    @pytest.mark.parametrize(
        ("base", "counted", "ceiling"),
        [
            (0.5, 1, 0.5),
            (0.5, 2, 1.0),
            (0.5, 3, 2.0),
            (0.5, 6, 16.0),
            (0.5, 7, 30.0),
            (0.5, 40, 30.0),
            (0.01, 3, 0.04),
        ],
    )
    def test_the_ceiling_doubles_per_counted_attempt_up_to_the_cap(
        self, base: float, counted: int, ceiling: float
    ) -> None:
        """Attempt n waits up to base * 2**(n-1), never more than 30 s."""
        assert RetryPolicy(backoff_base_seconds=base).backoff(counted) == pytest.approx(ceiling)

    @pytest.mark.parametrize(("counted", "ceiling"), [(1, 0.5), (2, 1.0), (9, 30.0)])
    def test_the_jitter_draws_below_the_ceiling(self, counted: int, ceiling: float) -> None:
        """The wait is the jitter's pick for that attempt's ceiling (full jitter in runs)."""
        policy = RetryPolicy(jitter=lambda top: top / 4)
        assert policy.backoff(counted) == ceiling / 4


class TestResending:
    @pytest.mark.parametrize(
        ("repeatable", "force", "may"),
        [(True, False, True), (False, False, False), (False, True, True), (True, True, True)],
    )
    def test_only_a_repeatable_request_goes_again_after_an_uncertain_result(
        self, repeatable: bool, force: bool, may: bool
    ) -> None:
        """A request with side effects (a refund) is never re-sent after a result that may mean
        it was applied, unless the run is forced."""
        assert RetryPolicy(force=force).may_resend(repeatable=repeatable) is may

    @pytest.mark.parametrize(
        ("results", "repeatable", "status", "http_status", "maybe_applied"),
        [
            ((AFTER_COMMIT_502,) * 3, True, Status.FAILED, 502, True),
            ((TIMEOUT,) * 3, True, Status.FAILED, None, True),
            ((REFUSED,) * 3, False, Status.FAILED, None, False),
            ((answered(425, Verdict.NOT_PROCESSED),) * 3, False, Status.FAILED, 425, False),
            ((REFUSED, REFUSED, AFTER_COMMIT_502), True, Status.FAILED, 502, True),
            ((REFUSED, AFTER_COMMIT_502), False, Status.UNKNOWN, 502, False),
        ],
    )
    def test_where_retries_end(
        self,
        results: tuple[Result, ...],
        repeatable: bool,
        status: Status,
        http_status: int | None,
        maybe_applied: bool,
    ) -> None:
        """After max_attempts (3 here) counted attempts the request fails, saying whether an
        attempt may have applied it; a non-repeatable one ends unknown at its first uncertain
        result, whatever came before it."""
        step = decide(*results, repeatable=repeatable)
        assert isinstance(step, Done)
        assert (step.status, step.http_status, step.attempts) == (
            status,
            http_status,
            len(results),
        )
        assert step.maybe_applied is maybe_applied


class TestRetryAfter:
    @pytest.mark.parametrize(("retry_after", "pause"), [(None, 1.0), (0.0, 0.0), (30.0, 30.0)])
    def test_a_429_pauses_for_its_retry_after_or_one_second(
        self, retry_after: float | None, pause: float
    ) -> None:
        """The community waits what the API asks; a 429 that asks nothing waits 1 s."""
        assert decide(answered(429, Verdict.RATE_LIMITED, retry_after)) == Pause(pause)
        assert RetryPolicy().pause_for(retry_after) == pause


class TestRateLimitBudget:
    @pytest.mark.parametrize(
        ("budget", "held", "wait", "held_after"),
        [
            (900.0, 0.0, 30.0, 30.0),
            (900.0, 870.0, 30.0, 900.0),
            (900.0, 10.0, 0.0, 11.0),
            (900.0, 10.0, 0.4, 11.0),
            (2.5, 1.0, 1.0, 2.0),
        ],
    )
    def test_a_wait_within_the_budget_is_charged(
        self, budget: float, held: float, wait: float, held_after: float
    ) -> None:
        """Each 429 charges its Retry-After, at least 1 s; reaching the budget exactly is
        still within it."""
        charge = RetryPolicy(rate_limit_budget_seconds=budget).charge_rate_limit(held, wait)
        assert charge.stop is None and charge.held_seconds == held_after

    @pytest.mark.parametrize(
        ("budget", "held", "wait", "reason"),
        [
            (
                900.0,
                880.0,
                30.0,
                "rate limited (429) for 880 s, and the API asks to wait 30 s more: over "
                "rate_limit_budget_seconds = 900; run again later",
            ),
            (
                60.0,
                0.0,
                3600.0,
                "rate limited (429) for 0 s, and the API asks to wait 3600 s more: over "
                "rate_limit_budget_seconds = 60; run again later",
            ),
            (
                2.5,
                2.0,
                0.0,
                "rate limited (429) for 2 s, and the API asks to wait 0 s more: over "
                "rate_limit_budget_seconds = 2.5; run again later",
            ),
        ],
    )
    def test_a_wait_past_the_budget_stops_the_community(
        self, budget: float, held: float, wait: float, reason: str
    ) -> None:
        """A wait that would pass the budget is not taken: the community stops ("run again
        later"), so a spent quota never keeps a nightly run waiting, and is not charged."""
        charge = RetryPolicy(rate_limit_budget_seconds=budget).charge_rate_limit(held, wait)
        assert charge.stop == reason and charge.held_seconds == held


APPLIED, REJECTED = Verdict.APPLIED, Verdict.REJECTED


class TestRejectGuard:
    @pytest.mark.parametrize(
        ("verdicts", "answered", "rejected"),
        [
            ((), 0, 0),
            ((APPLIED, REJECTED, REJECTED), 3, 2),
            ((Verdict.RATE_LIMITED, Verdict.TRANSIENT, Verdict.AUTH, Verdict.NOT_PROCESSED), 0, 0),
            ((REJECTED,) * 12, 10, 10),
            ((APPLIED,) * 10 + (REJECTED,) * 5, 10, 0),
        ],
    )
    def test_the_tally_counts_answered_rows_of_the_window_only(
        self, verdicts: tuple[Verdict, ...], answered: int, rejected: int
    ) -> None:
        """Applied and rejected rows count, only the first guard_window (10 here) of them;
        429s, 5xx, timeouts and a refused key are not answers about the row."""
        policy = RetryPolicy(guard_window=10)
        tally = RejectTally()
        for verdict in verdicts:
            tally = policy.count_answer(tally, verdict)
        assert tally == RejectTally(answered=answered, rejected=rejected)

    @pytest.mark.parametrize(
        ("max_reject_rate", "window", "answered", "rejected", "stops"),
        [
            (0.5, 10, 10, 5, False),
            (0.5, 10, 6, 6, True),
            (0.5, 10, 10, 6, True),
            (0.5, 50, 25, 25, False),
            (0.5, 50, 26, 26, True),
            (0.2, 10, 3, 3, True),
            (1.0, 10, 10, 10, False),
        ],
    )
    def test_the_guard_stops_past_its_share_of_the_window(
        self, max_reject_rate: float, window: int, answered: int, rejected: int, stops: bool
    ) -> None:
        """The community stops once more than max_reject_rate of guard_window rows are
        rejected, as soon as that many are, without waiting for the window to fill; a rate of
        1 never stops it (verify: a 404 is an answer there)."""
        policy = RetryPolicy(max_reject_rate=max_reject_rate, guard_window=window)
        reason = policy.guard_stop(RejectTally(answered=answered, rejected=rejected))
        assert (reason is not None) is stops

    def test_the_guard_says_what_it_counted(self) -> None:
        """The reason names the rejections, the rows answered, the share and the window."""
        policy = RetryPolicy(max_reject_rate=0.5, guard_window=10)
        assert policy.guard_stop(RejectTally(answered=7, rejected=6)) == (
            "stopped after 6 of the first 7 answered rows were rejected (over 50% of 10): "
            "check the file for a systematic mistake"
        )


SENT_ONCE = record(Attempts(), BEFORE_COMMIT_503)
SENT_AMBIGUOUS = record(Attempts(), AFTER_COMMIT_502)
SENT_REFUSED = record(Attempts(), REFUSED)


class TestEndedFromOutside:
    @pytest.mark.parametrize(
        ("attempts", "status", "sent"),
        [
            (Attempts(), Status.SKIPPED, 0),
            (SENT_REFUSED, Status.FAILED, 1),
            (SENT_AMBIGUOUS, Status.UNKNOWN, 1),
        ],
    )
    def test_a_stop_before_the_next_attempt(
        self, attempts: Attempts, status: Status, sent: int
    ) -> None:
        """A stopped community or run: never sent is skipped; sent, it failed, or is unknown
        when an attempt may have applied it."""
        done = stopped(attempts, "community key rejected with 401")
        assert (done.status, done.attempts) == (status, sent)

    @pytest.mark.parametrize(
        ("attempts", "status"),
        [(SENT_REFUSED, Status.FAILED), (SENT_AMBIGUOUS, Status.UNKNOWN)],
    )
    def test_a_spent_rate_limit_budget(self, attempts: Attempts, status: Status) -> None:
        """The row the budget ran out on fails with the reason, unknown if it may have been
        applied by an earlier attempt."""
        limited = record(attempts, answered(429, Verdict.RATE_LIMITED, 60))
        done = rate_limit_spent(limited, "over budget", limited.last_error)
        assert (done.status, done.http_status, done.attempts) == (status, 429, 2)
        assert done.error is not None and done.error.startswith("over budget: HTTP 429")

    @pytest.mark.parametrize(
        ("attempts", "status"),
        [
            (Attempts(), Status.SKIPPED),
            (SENT_ONCE, Status.UNKNOWN),
            (dataclasses.replace(SENT_REFUSED, maybe_applied=True), Status.UNKNOWN),
        ],
    )
    def test_an_interrupt_in_flight_is_unknown(self, attempts: Attempts, status: Status) -> None:
        """Cancelled past the grace period: not yet sent is skipped; anything sent is unknown."""
        assert interrupted(attempts).status is status
