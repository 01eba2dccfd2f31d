"""The verify stage: read back what a file's rows wrote and compare.

Reads are GETs sent by the same :class:`~reconcile.dispatch.Dispatcher` as the writes: each
community's key, pacer (reads count against the vendor's quota), concurrency, retries on
429/5xx with Retry-After; a refused key stops that community's reads only. One read serves every
row of the record it returns. A read that differs within ``verify_settle_seconds`` of the write
is read again with backoff until it matches or the window closes. Verify never writes: every
request it sends is a GET, and nothing is recorded in the ledger.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import polars as pl

from reconcile.client import Answer, Client, Transport, make_client
from reconcile.columns import ERROR, REQUEST_ID, ROW
from reconcile.credentials import Credentials, resolve_credentials
from reconcile.dispatch import CommunityLane, Dispatcher, PlannedRequest
from reconcile.job import Job
from reconcile.operations import Operation
from reconcile.outcome import RequestOutcome
from reconcile.pipeline import prepare
from reconcile.plan import RequestPlan
from reconcile.readback import (
    Ambiguous,
    ReadPlan,
    RowVerdict,
    VerifyStatus,
    confirmation,
    differences,
    row_verdict,
)

if TYPE_CHECKING:
    from reconcile.run_types import Prepared

_READING: contextvars.ContextVar[int] = contextvars.ContextVar("reading")
#: Read again after 0.5 s, 1 s, 2 s ... (capped) while the settle window is open.
SETTLE_FIRST_WAIT, SETTLE_MAX_WAIT = 0.5, 5.0


class _Keeping:
    """A transport that keeps each read's answer, by the read it was sent for."""

    def __init__(self, inner: Transport) -> None:
        self.inner, self.answers = inner, dict[int, Answer]()

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        assert method == "GET" and body is None, "verify only reads"
        answer = await self.inner.exchange(method, url, headers, body)
        self.answers[_READING.get()] = answer
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


class _ReadDispatcher(Dispatcher):
    async def _send_one(self, community: CommunityLane, request: PlannedRequest) -> None:
        token = _READING.set(request.request_id)
        try:
            await super()._send_one(community, request)
        finally:
            _READING.reset(token)


@dataclasses.dataclass(slots=True)
class _Read:
    community: str
    plan: ReadPlan
    rows: list[tuple[int, str | None]]
    """(row, its item) of every row this read serves."""
    verdicts: dict[int, RowVerdict] = dataclasses.field(default_factory=dict)
    settled: bool = False


#: A request id -> the verdict of its write's answer, kept at send time (:mod:`reconcile.echoes`).
Kept = Callable[[int], RowVerdict | None]


def plan_reads(
    operation: Operation,
    plan: RequestPlan,
    valid: pl.DataFrame,
    rows: pl.Series | None = None,
    kept: Kept | None = None,
) -> tuple[list[_Read], dict[int, RowVerdict]]:
    """The reads that serve ``rows`` (default: every planned row), one per distinct GET of a
    community, and the verdicts of rows no read serves (Returning.AI: nothing to read; their
    write's answer ``kept`` at send time confirms them, or not)."""
    chosen = plan.rows if rows is None else plan.rows.filter(pl.col(ROW).is_in(rows.implode()))
    joined = chosen.join(plan.requests, on=REQUEST_ID, how="left").join(
        valid, on=ROW, how="left", suffix="_row"
    )
    reads: dict[tuple[str, str], _Read] = {}
    unread: dict[int, RowVerdict] = {}
    for line in joined.iter_rows(named=True):
        body = json.loads(line["body"]) if line["body"] else {}
        read = operation.read_back(line["target"], line["path"], body)
        if read is None:
            echoed = kept(line[REQUEST_ID]) if kept is not None else None
            unread[line[ROW]] = echoed or confirmation(operation.echoed(body), None)
            continue
        entry = reads.setdefault((line["community"], read.path), _Read(line["community"], read, []))
        entry.rows.append((line[ROW], operation.row_item(line)))
    return list(reads.values()), unread


def judge(read: _Read, outcome: RequestOutcome, answer: Answer | None) -> bool:
    """Set the read's row verdicts; true when they are final (nothing left to settle)."""
    if answer is not None and answer.status == 404:
        status, found = VerifyStatus.NOT_FOUND, None
    elif answer is None or not 200 <= answer.status < 300:
        message = outcome.error or f"HTTP {outcome.http_status}"
        for row, _ in read.rows:
            read.verdicts[row] = RowVerdict(VerifyStatus.READ_FAILED, f"read failed: {message}")
        return True
    else:
        status, found = None, None
        try:
            record = json.loads(answer.body)
            record = record if read.plan.pick is None else read.plan.pick(record)
        except (ValueError, Ambiguous) as exc:
            for row, _ in read.rows:
                read.verdicts[row] = RowVerdict(VerifyStatus.READ_FAILED, f"read failed: {exc}")
            return True
        if record is None:
            status = VerifyStatus.NOT_FOUND
        else:
            found = differences(record, read.plan.expects)
    for row, item in read.rows:
        if status is VerifyStatus.NOT_FOUND:
            read.verdicts[row] = RowVerdict(status, f"not found: GET {read.plan.path}")
        else:
            read.verdicts[row] = row_verdict(read.plan, found or [], item)
    return all(
        v.status is not VerifyStatus.MISMATCH and v.status is not VerifyStatus.NOT_FOUND
        for v in read.verdicts.values()
    )


async def read_back(
    operation: Operation,
    job: Job,
    reads: list[_Read],
    credentials: Mapping[str, Credentials],
    *,
    settle_until: float,
    client: Client | None = None,
) -> int:
    """Send the reads (settling until ``settle_until``, a ``time.time()``); sets each read's
    verdicts; returns the number of GETs answered or tried."""
    sent, wait = 0, SETTLE_FIRST_WAIT
    todo = list(reads)
    max_connections = sum(job.communities[c].concurrency for c in {r.community for r in reads}) or 1
    async with client or make_client(
        timeout_seconds=job.timeout_seconds, max_connections=max_connections
    ) as base:
        keeping = _Keeping(base.transport)
        reader = Client(keeping, base.timeout_seconds)
        while todo:
            planned = [
                PlannedRequest(i, r.community, "GET", r.plan.path, None, repeatable=True)
                for i, r in enumerate(todo)
            ]
            keeping.answers.clear()
            dispatcher = _ReadDispatcher(
                operation=operation, job=job, client=reader, stop=anyio.Event()
            )
            outcomes = await dispatcher.run(planned, credentials)
            sent += sum(o.attempts for o in outcomes)
            again = []
            for request, read, outcome in zip(planned, todo, outcomes, strict=True):
                if not judge(read, outcome, keeping.answers.get(request.request_id)):
                    again.append(read)
            if not again or time.time() + wait > settle_until:
                break
            await anyio.sleep(wait)
            todo, wait = again, min(wait * 2, SETTLE_MAX_WAIT)
    return sent


def verdicts_frame(reads: list[_Read], unread: Mapping[int, RowVerdict]) -> pl.DataFrame:
    """``__row``, ``verify_status``, ``verify_detail`` for every row verified."""
    found = {**unread, **{row: v for r in reads for row, v in r.verdicts.items()}}
    rows = sorted(found)
    return pl.DataFrame(
        {
            ROW: rows,
            "verify_status": [str(found[r].status) for r in rows],
            "verify_detail": [found[r].detail or None for r in rows],
        },
        schema={ROW: pl.Int64, "verify_status": pl.String, "verify_detail": pl.String},
    )


def sampled(reads: list[_Read], percent: float, always: set[int]) -> list[_Read]:
    """``--verify-sample N``: a random N% of the reads (at least one), plus every read that
    serves a row in ``always`` (unknown rows are settled by their read, never skipped)."""
    kept = {i for i, r in enumerate(reads) if any(row in always for row, _ in r.rows)}
    others = [i for i in range(len(reads)) if i not in kept]
    count = min(len(others), max(1, math.ceil(len(others) * percent / 100))) if others else 0
    kept |= set(random.SystemRandom().sample(others, count))
    return [r for i, r in enumerate(reads) if i in kept]


def exit_code(verdicts: pl.DataFrame) -> int:
    """0 all verified/confirmed/unverifiable; 4 any mismatch or not found; 1 reads failed."""
    statuses = set(verdicts.get_column("verify_status").to_list())
    if statuses & {VerifyStatus.MISMATCH, VerifyStatus.NOT_FOUND}:
        return 4
    if VerifyStatus.READ_FAILED in statuses:
        return 1
    return 0


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    """Per valid row its verdict (``__row``, ``verify_status``, ``verify_detail``), the number
    of GETs sent, and the exit code."""

    verdicts: pl.DataFrame
    reads: int

    @property
    def exit_code(self) -> int:
        return exit_code(self.verdicts)


def verify_prepared(
    prepared: Prepared,
    credentials: Mapping[str, Credentials],
    *,
    rows: pl.Series | None = None,
    written_at: float | None = None,
    sample_percent: float | None = None,
    always: Collection[int] = (),
    kept: Kept | None = None,
) -> Verification:
    """Read back ``rows`` (default: all valid rows) of a prepared file
    (:func:`reconcile.pipeline.prepare`). ``written_at``: when the writes ended (settling lasts
    ``verify_settle_seconds`` from then; None: now). ``kept``: the verdicts of the write answers
    of operations with no read (``run --verify``)."""
    job = dataclasses.replace(prepared.job, max_reject_rate=1.0)  # a 404 is an answer here
    valid = prepared.validated.filter(pl.col(ERROR).is_null())
    reads, unread = plan_reads(prepared.operation, prepared.plan, valid, rows, kept)
    if sample_percent is not None:
        reads = sampled(reads, sample_percent, set(always))
    settle_until = (written_at or time.time()) + job.verify_settle_seconds
    sent = anyio.run(
        lambda: read_back(prepared.operation, job, reads, credentials, settle_until=settle_until)
    )
    return Verification(verdicts_frame(reads, unread), sent)


def verify_file(
    path: Path,
    job: Job,
    *,
    environ: Mapping[str, str],
    given: Mapping[str, Mapping[str, str]] | None = None,
) -> Verification:
    """Which rows of a file the API already holds (no run needed); never writes."""
    prepared = prepare(path, job)
    communities = sorted(set(prepared.plan.requests.get_column("community").to_list()))
    credentials = resolve_credentials(prepared.operation, job, communities, environ, given)
    return verify_prepared(prepared, credentials)
