"""What the console's pages show of a run's files: counts, and the error table cell by cell."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from reconcile.intake import RESULT_PREFIX

#: The error table shows this many problems; the errors file has them all.
SHOWN_PROBLEMS = 500


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One problem of one row: the cells it is about (column, value) and the message."""

    row: str
    cells: list[tuple[str, str]]
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorTable:
    problems: list[Problem]
    rows: int
    """Rows with at least one problem."""
    total: int
    """Problems in all (the table may show fewer)."""


def _read(path: Path) -> pl.DataFrame:
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    return frame.rename({c: c.lstrip("\ufeff") for c in frame.columns})


def status_counts(plan_rows: pl.DataFrame) -> dict[str, int]:
    """Rows per status of a plan (``would_apply``, ``invalid`` ...), in a fixed order."""
    counts = dict(plan_rows.group_by("status").len().iter_rows())
    return {k: int(counts[k]) for k in sorted(counts, key=_status_order)}


def _status_order(status: str) -> tuple[int, str]:
    order = ("would_apply", "applied", "already_applied", "invalid", "rejected", "failed")
    return (order.index(status) if status in order else len(order), status)


def results_counts(path: Path) -> dict[str, int] | None:
    """Rows per status of a results file, or None while it is not written (or is not a file:
    a run that stopped before writing it). Our ``status`` is ``reconcile_status`` where the
    input has a column of that name (Voucherify orders do)."""
    if not path.is_file():
        return None
    frame = _read(path)
    ours = f"{RESULT_PREFIX}status" if f"{RESULT_PREFIX}status" in frame.columns else "status"
    return status_counts(frame.select(pl.col(ours).alias("status")))


def community_totals(plan_rows: pl.DataFrame) -> dict[str, int]:
    """Requests a run of this plan sends, per community (the live progress bars' ends)."""
    sending = plan_rows.filter(pl.col("status") == "would_apply")
    return dict(sorted(sending.group_by("community").len().iter_rows()))


def error_cells(errors_path: Path) -> ErrorTable:
    """The errors file as (row, cells, message) problems: a message names its columns by the
    file's own headers (``Voucher Code: ...`` or ``'Voucher Code' and ...``), which marks
    those cells as bad."""
    if not errors_path.exists():
        return ErrorTable([], 0, 0)
    frame = _read(errors_path)
    headers = [c for c in frame.columns if c not in ("row", "status", "error")]
    messages = frame.select(
        "row", *headers, pl.col("error").fill_null("").str.split("; ").alias("message")
    ).explode("message")
    problems = []
    for record in messages.head(SHOWN_PROBLEMS).iter_rows(named=True):
        text = record["message"] or ""
        named = [h for h in headers if text.startswith(f"{h}: ") or f"'{h}'" in text]
        cells = [(h, record[h] or "") for h in named]
        problems.append(Problem(str(record["row"]), cells, text))
    return ErrorTable(problems, frame.height, messages.height)
