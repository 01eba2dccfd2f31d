"""What the console's pages show of a run's files: counts, and the error table cell by cell."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from reconcile.table import RESULT_PREFIX

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


#: Planned changes shown per page on a run's page.
CHANGES_PAGE = 50


@dataclasses.dataclass(frozen=True, slots=True)
class Changes:
    """One page of a check's planned changes: the rows a run would send, with their cells."""

    columns: list[str]
    """The file's own columns (the row number first)."""
    rows: list[list[str]]
    matching: int
    """Rows that would be sent matching the search (all of them without one)."""
    sending: int
    invalid: list[str]
    """Row numbers a submission leaves out (they have errors)."""
    query: str
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.matching // CHANGES_PAGE))


def planned_changes(check_path: Path, query: str = "", page: int = 1) -> Changes:
    """The check's rows that would be sent (``would_apply``), each with its cells as the file
    has them: which order gets which values. ``query`` keeps the rows with a cell containing
    it (any case, as plain text, never a pattern); 50 a page."""
    if not check_path.exists():
        return Changes([], [], 0, 0, [], query, 1)
    frame = _read(check_path)
    status = next(c for c in ("reconcile_status", "status") if c in frame.columns)
    columns = frame.columns[: frame.columns.index(status)]
    invalid = frame.filter(pl.col(status) == "invalid").get_column(columns[0]).to_list()
    sending = frame.filter(pl.col(status) == "would_apply").select(columns)
    found = sending
    if query.strip():
        wanted = query.strip().lower()
        found = sending.filter(
            pl.any_horizontal(
                pl.col(c).fill_null("").str.to_lowercase().str.contains(wanted, literal=True)
                for c in columns
            )
        )
    pages = max(1, -(-found.height // CHANGES_PAGE))
    page = min(max(1, page), pages)
    shown = found.slice((page - 1) * CHANGES_PAGE, CHANGES_PAGE)
    rows = [[value or "" for value in row] for row in shown.iter_rows()]
    return Changes(list(columns), rows, found.height, sending.height, invalid, query, page)
