"""Send the planned requests: per community, concurrent, paced, retried; one outcome each.

Communities run side by side in one task group over one shared client. Each has its own
credentials, pacer, concurrency cap and stop switch (a refused key, a spent 429 budget, the
reject guard). What follows each attempt is the retry policy's to say
(:class:`reconcile.retry.RetryPolicy`); this module only carries it out.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import anyio
import structlog

from reconcile import retry
from reconcile.client import Answer, Client, SendFailure, send
from reconcile.credentials import Credentials, Missing
from reconcile.job import Job
from reconcile.operations.base import Operation, Verdict
from reconcile.outcome import OnProgress, RequestOutcome, Status
from reconcile.pacing import REAL_CLOCK, Clock, Pacer
from reconcile.retry import RejectTally, RetryPolicy, full_jitter

log = structlog.get_logger("reconcile.dispatch")


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedRequest:
    request_id: int
    community: str
    method: str
    path: str
    body: str | None
    repeatable: bool
    fingerprint: str = ""
    target: str | None = None
    """The id of the record the request changes (the ledger tells later changes by it)."""
    note: str | None = None
    """Said in the outcome's error even on success (e.g. why it is re-sent)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SendEvent:
    """One HTTP exchange, for the report's rate-over-time chart."""

    at: float
    community: str
    http_status: int | None
    retry: bool


class Recorder(Protocol):
    """Where durable state goes (the ledger). ``sending`` returns once the request is recorded
    as in flight (durably: a crash after it means 'maybe sent'); ``finished`` records an
    outcome without waiting."""

    async def sending(self, request: PlannedRequest) -> None: ...

    def finished(self, outcome: RequestOutcome) -> None: ...


class _NoRecorder:
    async def sending(self, request: PlannedRequest) -> None:
        pass

    def finished(self, outcome: RequestOutcome) -> None:
        pass


#: Called with each answer that came back (``run --verify`` keeps Returning.AI's echoes).
OnAnswer = Callable[[PlannedRequest, Answer], None]


@dataclasses.dataclass(slots=True)
class CommunityLane:
    name: str
    headers: dict[str, str]
    pacer: Pacer
    concurrency: int
    stop_reason: str | None = None
    rate_limited_seconds: float = 0.0
    """Time 429s have held this community (:meth:`RetryPolicy.charge_rate_limit`)."""
    tally: RejectTally = dataclasses.field(default_factory=RejectTally)


class Dispatcher:
    def __init__(
        self,
        *,
        operation: Operation,
        job: Job,
        client: Client,
        stop: anyio.Event,
        recorder: Recorder | None = None,
        progress: OnProgress | None = None,
        force: bool = False,
        rng: random.Random | None = None,
        clock: Clock = REAL_CLOCK,
        on_answer: OnAnswer | None = None,
    ) -> None:
        """``clock`` paces and backs off (unit tests pass a fake one: no real waiting);
        ``on_answer`` sees every answer (status and body) as it comes back."""
        self.operation, self.job, self.client, self.stop = operation, job, client, stop
        self.recorder = recorder or _NoRecorder()
        self.progress = progress or (lambda community, status: None)
        self.force = force
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_answer = on_answer
        self.policy = RetryPolicy.from_job(job, jitter=full_jitter(self.rng), force=force)
        self.outcomes: dict[int, RequestOutcome] = {}
        self.events: list[SendEvent] = []
        self.stop_reason = "run interrupted"

    async def run(
        self,
        requests: Sequence[PlannedRequest],
        credentials: Mapping[str, Credentials],
    ) -> list[RequestOutcome]:
        """Send ``requests``; ``credentials`` maps a community to its secrets, or to the reason
        it has none (its rows then fail)."""
        by_community: dict[str, list[PlannedRequest]] = {}
        for request in requests:
            by_community.setdefault(request.community, []).append(request)
        async with anyio.create_task_group() as group:
            for name, todo in by_community.items():
                secrets = credentials.get(name, Missing(f"no credentials for community {name!r}"))
                if isinstance(secrets, Missing):
                    for request in todo:
                        self._finish(request, Status.FAILED, None, secrets.reason, 0)
                    continue
                settings = self.job.communities[name]
                community = CommunityLane(
                    name=name,
                    headers={
                        **self.operation.extra_headers(self.job.options),
                        **self.operation.auth_headers(secrets.values),
                    },
                    pacer=Pacer(settings.rate_per_second, self.clock),
                    concurrency=settings.concurrency,
                )
                group.start_soon(self._run_community, community, todo)
        return [self.outcomes[r.request_id] for r in requests]

    async def _run_community(self, community: CommunityLane, todo: list[PlannedRequest]) -> None:
        """``concurrency`` workers take the community's requests in order, one at a time each:
        the cap without a task per request."""
        structlog.contextvars.bind_contextvars(community=community.name)
        log.info("community.start", requests=len(todo), rate=community.pacer.configured)
        queue = iter(todo)

        async def worker() -> None:
            for request in queue:  # shared: each request goes to exactly one worker
                if community.stop_reason or self.stop.is_set():
                    return
                await self._send_one(community, request)

        try:
            async with anyio.create_task_group() as group:
                for _ in range(min(community.concurrency, len(todo))):
                    group.start_soon(worker)
        finally:
            reason = community.stop_reason or self.stop_reason
            for request in todo:
                if request.request_id not in self.outcomes:
                    self._finish(request, Status.SKIPPED, None, f"not sent: {reason}", 0)
            log.info("community.done", stopped=community.stop_reason)

    async def _wait(self, seconds: float) -> bool:
        """Sleep, unless the run is stopped first; true when it was."""
        async with anyio.create_task_group() as group:

            async def stop_early() -> None:
                await self.stop.wait()
                group.cancel_scope.cancel()

            group.start_soon(stop_early)
            await self.clock.sleep(seconds)
            group.cancel_scope.cancel()
        return self.stop.is_set()

    async def _send_one(self, community: CommunityLane, request: PlannedRequest) -> None:
        """Attempts until the retry policy (reconcile.retry) says the request is done."""
        url = self.job.base_url + request.path
        attempts = retry.Attempts()
        on_the_wire = False
        try:
            while True:
                if community.stop_reason or self.stop.is_set():
                    reason = community.stop_reason or self.stop_reason
                    return self._end(request, retry.stopped(attempts, reason))
                await community.pacer.acquire()
                if community.stop_reason or self.stop.is_set():
                    continue
                await self.recorder.sending(request)
                on_the_wire = True
                result = await self._attempt(community, request, url, attempts.sent)
                on_the_wire = False
                attempts = retry.record(attempts, result)
                step = retry.next_step(
                    result, attempts, repeatable=request.repeatable, policy=self.policy
                )
                if isinstance(step, retry.Done):
                    return self._conclude(community, request, result, step)
                if isinstance(step, retry.Pause):
                    if (spent := self._rate_limit_spent(community, step.wait)) is not None:
                        return self._end(
                            request, retry.rate_limit_spent(attempts, spent, attempts.last_error)
                        )
                    community.pacer.pause(step.wait)
                    log.info(
                        "community.rate_limited", retry_after=step.wait, rate=community.pacer.rate
                    )
                    continue
                await self._wait(step.wait)
        except anyio.get_cancelled_exc_class():
            if on_the_wire:
                # Cancelled with the request out (past the interrupt grace): it may have
                # reached the API and been applied, whatever the answer would have said.
                attempts = dataclasses.replace(attempts, sent=attempts.sent + 1, maybe_applied=True)
            if request.request_id not in self.outcomes:
                self._end(request, retry.interrupted(attempts))
            raise

    async def _attempt(
        self, community: CommunityLane, request: PlannedRequest, url: str, before: int
    ) -> retry.Result:
        """One request on the wire, and what came back."""
        try:
            answer: Answer = await send(
                self.client, request.method, url, headers=community.headers, body=request.body
            )
        except SendFailure as failure:
            self.events.append(SendEvent(time.time(), community.name, None, before > 0))
            log.warning(
                "request.no_answer",
                request=request.request_id,
                error=str(failure),
                attempt=before + 1,
            )
            return retry.NoAnswer(str(failure), failure.maybe_applied)
        self.events.append(SendEvent(time.time(), community.name, answer.status, before > 0))
        if self.on_answer is not None:
            self.on_answer(request, answer)
        log.debug(
            "request.answered", request=request.request_id, status=answer.status, attempt=before + 1
        )
        verdict = self.operation.classify(answer.status, answer.body)
        return retry.Answered(answer.status, verdict, answer.retry_after)

    def _conclude(
        self,
        community: CommunityLane,
        request: PlannedRequest,
        result: retry.Result,
        done: retry.Done,
    ) -> None:
        """Community-wide effects of an answer (pacing, the reject guard, a refused key), then
        the request's outcome."""
        if isinstance(result, retry.Answered):
            if result.verdict.verdict is Verdict.APPLIED:
                community.pacer.succeeded()
                done = dataclasses.replace(done, error=request.note)
            community.tally = self.policy.count_answer(community.tally, result.verdict.verdict)
            if community.stop_reason is None:
                community.stop_reason = self.policy.guard_stop(community.tally)
                if community.stop_reason is not None:
                    log.error("community.stopped", reason=community.stop_reason)
        if done.stop_community and community.stop_reason is None:
            community.stop_reason = done.stop_community
            log.error("community.stopped", reason=done.stop_community)
        self._end(request, done)

    def _end(self, request: PlannedRequest, done: retry.Done) -> None:
        self._finish(
            request,
            done.status,
            done.http_status,
            done.error,
            done.attempts,
            maybe_applied=done.maybe_applied,
        )

    def _rate_limit_spent(self, community: CommunityLane, wait: float) -> str | None:
        """Charge a 429's wait to the community; past its budget, the community stops and the
        reason it stopped is returned."""
        charge = self.policy.charge_rate_limit(community.rate_limited_seconds, wait)
        community.rate_limited_seconds = charge.held_seconds
        if charge.stop is None:
            return None
        if community.stop_reason is None:
            community.stop_reason = charge.stop
            log.error("community.stopped", reason=community.stop_reason)
        return community.stop_reason

    def _finish(
        self,
        request: PlannedRequest,
        status: Status,
        http_status: int | None,
        error: str | None,
        attempts: int,
        *,
        maybe_applied: bool = False,
    ) -> None:
        outcome = RequestOutcome(
            request.request_id,
            request.community,
            status,
            http_status,
            error,
            attempts,
            maybe_applied,
        )
        self.outcomes[request.request_id] = outcome
        self.recorder.finished(outcome)
        self.progress(request.community, status)
