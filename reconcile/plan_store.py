"""A plan as the audit store keeps it: its header, its decision and its rows.

A dry run's **plan** is, per input row, the exact request it would send (or its refusal) under a
header naming the maker, the input file and the job (:class:`PlanHeader`). The rows are kept as
one zstd Parquet value (:func:`rows_blob`); :class:`RecordedPlan` is a stored plan with its
decision, :class:`ApprovedPlan` one cleared to run. The store itself is
:class:`reconcile.audit.AuditStore`; the rules of who may decide what, :mod:`reconcile.approval`.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterable
from typing import Literal, NotRequired, TypedDict

from reconcile.columns import ROW
from reconcile.hashing import PLAN_COLUMNS
from reconcile.lazy import pl


class PlanHeader(TypedDict):
    """What a plan is of: who made it, from which file, under which job settings."""

    run_id: str
    maker: str
    created_at: str
    input_name: str
    input_path: str
    input_sha256: str
    job_fingerprint: str
    job_settings: dict[str, object]
    """Every job setting that changes what is sent (:func:`reconcile.approval.job_settings`)."""
    tool_version: str
    hash_format: NotRequired[str]
    """The form of the plan's hash (:mod:`reconcile.hashing`); absent: the legacy form."""


class Decision(TypedDict):
    """A second person's final word on a plan, over the plan's hash."""

    run_id: str
    decision: Literal["approved", "rejected"]
    decided_by: str
    decided_at: str
    note: str | None
    plan_sha256: str


class StandingRecord(TypedDict):
    """A plan's submission to the approvers, or its maker's withdrawal of it."""

    run_id: str
    by: str
    at: str
    note: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class PlanRows:
    """A plan's rows when they are not one frame (a large file's dry run, :mod:`reconcile.
    buckets`): ``slices`` gives them in row order (hashed), ``stored`` in any order (kept)."""

    slices: Callable[[], Iterable[pl.DataFrame]]
    stored: pl.LazyFrame


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedPlan:
    """A stored plan: its header, its hash and its decision (None: undecided)."""

    run_id: str
    header: PlanHeader
    plan_sha256: str
    decision: Decision | None

    @property
    def maker(self) -> str:
        return self.header["maker"]


@dataclasses.dataclass(frozen=True, slots=True)
class ApprovedPlan:
    """A plan cleared to run: approved by someone else, within its time to live."""

    recorded: RecordedPlan
    rows: pl.DataFrame

    @property
    def approver(self) -> str:
        assert self.recorded.decision is not None
        return self.recorded.decision["decided_by"]


def plan_rows(outcomes: pl.DataFrame) -> pl.DataFrame:
    """A dry run's outcomes as plan rows: per input row its request (or null) and status."""
    return outcomes.select(
        pl.col(ROW).cast(pl.Int64).alias("row"),
        pl.col("community"),
        pl.col("status"),
        pl.col("request"),
        pl.col("error"),
    ).sort("row")


def rows_blob(rows: pl.DataFrame | pl.LazyFrame) -> bytes:
    """A plan's rows as one zstd Parquet value: a million rows are stored in a fraction of a
    second; a lazy frame is streamed into it."""
    buffer = io.BytesIO()
    if isinstance(rows, pl.LazyFrame):
        rows.select(PLAN_COLUMNS).sink_parquet(buffer, compression="zstd")
    else:
        rows.select(PLAN_COLUMNS).write_parquet(buffer, compression="zstd")
    return buffer.getvalue()


def rows_from_blob(blob: bytes) -> pl.DataFrame:
    """The stored rows in row order (a large file's plan is stored bucket by bucket)."""
    return pl.read_parquet(io.BytesIO(blob)).sort("row", maintain_order=True)
