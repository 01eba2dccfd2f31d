"""Dispatch through the network seam: httpx.MockTransport and a fake clock, so retry, rate and
stop rules run in milliseconds, deterministically (issue 16). The real-stack tests stay in
test_dispatch.py and test_network_faults.py."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from reconcile.client import HttpxTransport, make_client
from reconcile.credentials import Secrets
from reconcile.dispatch import Dispatcher, PlannedRequest
from reconcile.job import load_job
from reconcile.operations import get_operation
from reconcile.outcome import RequestOutcome, Status
from tests.helpers import write_job


class FakeClock:
    """Time that passes only when something sleeps: a 900 s Retry-After takes no real time."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.time += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*answers: int | tuple[int, dict[str, str]] | type[Exception]) -> Handler:
    """A server answering each request with the next of ``answers`` (the last one repeats): a
    status, a status with headers, or an httpx error class to raise (no answer)."""
    queue: Iterator[int | tuple[int, dict[str, str]] | type[Exception]] = iter(answers)
    last: list[int | tuple[int, dict[str, str]] | type[Exception]] = [answers[-1]]

    def handle(request: httpx.Request) -> httpx.Response:
        answer = next(queue, last[0])
        if isinstance(answer, type):
            raise answer("injected", request=request)  # type: ignore[call-arg]
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, json={"message": f"HTTP {status} here"})

    return handle


def dispatch(
    tmp_path: Path,
    handler: Handler,
    *,
    count: int = 1,
    repeatable: bool = True,
    operation: str = "purchase-history",
    **settings: object,
) -> tuple[list[RequestOutcome], FakeClock, list[httpx.Request]]:
    """Send ``count`` requests of acme through ``handler`` with a fake clock."""
    job = load_job(
        write_job(
            tmp_path / "job.toml",
            "https://api.example.invalid",
            operation=operation,
            backoff_base_seconds=1,
            **settings,
        )
    )
    seen: list[httpx.Request] = []

    def recorded(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    clock = FakeClock()
    requests = [
        PlannedRequest(n, "acme", "PATCH", f"/v1/purchase-histories/ORD{n}", "{}", repeatable)
        for n in range(count)
    ]

    async def go() -> list[RequestOutcome]:
        transport = HttpxTransport(httpx.MockTransport(recorded))
        async with make_client(timeout_seconds=5, max_connections=4, transport=transport) as c:
            dispatcher = Dispatcher(
                operation=get_operation(operation),
                job=job,
                client=c,
                stop=anyio.Event(),
                rng=random.Random(1),
                clock=clock,
            )
            return await dispatcher.run(requests, {"acme": Secrets({"api_key": "k"})})

    return anyio.run(go), clock, seen


def summary(outcomes: list[RequestOutcome]) -> list[tuple[Status, int | None, int]]:
    return [(o.status, o.http_status, o.attempts) for o in outcomes]


class TestOneRequest:
    @pytest.mark.parametrize(
        ("answers", "repeatable", "expected"),
        [
            ((200,), True, (Status.APPLIED, 200, 1)),
            ((503, 200), True, (Status.APPLIED, 200, 2)),
            ((503,), False, (Status.UNKNOWN, 503, 1)),
            ((502, 502, 502), True, (Status.FAILED, 502, 3)),
            ((httpx.ReadTimeout, 200), True, (Status.APPLIED, 200, 2)),
            ((httpx.ReadTimeout,), False, (Status.UNKNOWN, None, 1)),
            ((httpx.RemoteProtocolError,), False, (Status.UNKNOWN, None, 1)),
            ((httpx.ConnectError, 200), False, (Status.APPLIED, 200, 2)),
            ((408, 200), False, (Status.APPLIED, 200, 2)),
            ((400,), True, (Status.REJECTED, 400, 1)),
            ((502, 409), True, (Status.UNKNOWN, 409, 2)),
            (((429, {"Retry-After": "7"}), 200), False, (Status.APPLIED, 200, 2)),
        ],
    )
    def test_outcome(
        self,
        tmp_path: Path,
        answers: tuple[int, ...],
        repeatable: bool,
        expected: tuple[Status, int | None, int],
    ) -> None:
        """The retry policy end to end over the seam: what each answer sequence becomes."""
        outcomes, _, seen = dispatch(
            tmp_path, scripted(*answers), repeatable=repeatable, max_attempts=3
        )
        assert summary(outcomes) == [expected]
        assert len(seen) == expected[2]  # attempts are the requests that left

    def test_a_retry_after_holds_the_community_that_long(self, tmp_path: Path) -> None:
        """A 429 with Retry-After: 120 waits 120 s of the clock, none of real time."""
        outcomes, clock, _ = dispatch(tmp_path, scripted((429, {"Retry-After": "120"}), 200))
        assert summary(outcomes) == [(Status.APPLIED, 200, 2)]
        assert clock.time >= 120

    def test_a_429_without_retry_after_waits_one_second(self, tmp_path: Path) -> None:
        outcomes, clock, _ = dispatch(tmp_path, scripted(429, 200))
        assert summary(outcomes) == [(Status.APPLIED, 200, 2)]
        assert 1 <= clock.time < 2

    def test_a_spent_rate_limit_budget_stops_the_community(self, tmp_path: Path) -> None:
        """Past rate_limit_budget_seconds the row fails with 429 and the rest are skipped."""
        outcomes, clock, _ = dispatch(
            tmp_path,
            scripted((429, {"Retry-After": "400"})),
            count=3,
            concurrency=1,
            rate_limit_budget_seconds=900,
        )
        assert [o.status for o in outcomes] == [Status.FAILED, Status.SKIPPED, Status.SKIPPED]
        assert outcomes[0].http_status == 429 and "run again later" in str(outcomes[0].error)
        assert clock.time >= 800

    def test_backoff_doubles_with_full_jitter(self, tmp_path: Path) -> None:
        """Four failed attempts wait at most 1 + 2 + 4 s before giving up."""
        outcomes, clock, _ = dispatch(tmp_path, scripted(503), max_attempts=4)
        assert summary(outcomes) == [(Status.FAILED, 503, 4)]
        assert 0 < clock.time <= 7 + 1


class TestCommunity:
    def test_a_refused_key_stops_the_community(self, tmp_path: Path) -> None:
        outcomes, _, seen = dispatch(tmp_path, scripted(401), count=5, concurrency=1)
        assert [o.status for o in outcomes] == [Status.FAILED] + [Status.SKIPPED] * 4
        assert len(seen) == 1

    def test_the_reject_guard_stops_a_systematic_mistake(self, tmp_path: Path) -> None:
        outcomes, _, seen = dispatch(
            tmp_path, scripted(400), count=20, concurrency=1, guard_window=10
        )
        assert sum(o.status is Status.REJECTED for o in outcomes) == 6
        assert all(o.status is Status.SKIPPED for o in outcomes[6:])
        assert len(seen) == 6

    def test_the_rate_is_never_exceeded(self, tmp_path: Path) -> None:
        """Ten requests at 5 per second take at least 1.8 s of the clock."""
        outcomes, clock, _ = dispatch(
            tmp_path, scripted(200), count=10, rate_per_second=5, concurrency=4
        )
        assert all(o.status is Status.APPLIED for o in outcomes)
        assert clock.time >= 1.8
