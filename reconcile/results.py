"""Outcomes -> the results file (one line per input row), the errors file and the summary.

Results are opened in Excel: every text cell that Excel would read as a formula is neutralised
(OWASP CSV injection guidance), files carry a UTF-8 BOM so accents survive, and files are written
atomically so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from reconcile import atomic
from reconcile.columns import ERROR, REQUEST_ID, ROW
from reconcile.outcome import SUCCESS, Status
from reconcile.table import FORMULA_START, RESULT_PREFIX, Table

OUTCOME_SCHEMA = {
    REQUEST_ID: pl.Int64,
    "status": pl.String,
    "http_status": pl.Int64,
    "error": pl.String,
    "attempts": pl.Int64,
}


def would_apply(requests: pl.DataFrame) -> pl.DataFrame:
    """Request outcomes of a dry run: every request would apply."""
    return requests.select(
        REQUEST_ID,
        pl.lit(Status.WOULD_APPLY.value).alias("status"),
        pl.lit(None, pl.Int64).alias("http_status"),
        pl.lit(None, pl.String).alias("error"),
        pl.lit(0, pl.Int64).alias("attempts"),
    )


def skipped_where(outcomes: pl.DataFrame, where: pl.Expr, error: pl.Expr) -> pl.DataFrame:
    """Rows where ``where`` holds end ``skipped`` with ``error``: nothing was sent for them."""
    return outcomes.with_columns(
        pl.when(where)
        .then(pl.lit(Status.SKIPPED.value))
        .otherwise(pl.col("status"))
        .alias("status"),
        pl.when(where)
        .then(pl.lit(None, pl.Int64))
        .otherwise(pl.col("http_status"))
        .alias("http_status"),
        pl.when(where).then(error).otherwise(pl.col("error")).alias("error"),
        pl.when(where).then(0).otherwise(pl.col("attempts")).alias("attempts"),
    )


def row_outcomes(
    validated: pl.DataFrame,
    rows: pl.DataFrame,
    requests: pl.DataFrame,
    request_outcomes: pl.DataFrame,
) -> pl.DataFrame:
    """One outcome per row: ``__row, community, status, http_status, error, attempts, request``.

    Every row of a request reports that request's outcome; invalid rows report their errors.
    """
    sent = (
        rows.join(requests.select(REQUEST_ID, "request"), on=REQUEST_ID, how="left")
        .join(request_outcomes, on=REQUEST_ID, how="left")
        .drop(REQUEST_ID)
    )
    base = validated.select(ROW, "community", ERROR).join(
        sent, on=ROW, how="left", maintain_order="left"
    )
    invalid = pl.col(ERROR).is_not_null()
    return base.select(
        ROW,
        "community",
        pl.when(invalid)
        .then(pl.lit(Status.INVALID.value))
        .otherwise(pl.col("status"))
        .alias("status"),
        pl.col("http_status").cast(pl.Int64),
        pl.when(invalid).then(pl.col(ERROR)).otherwise(pl.col("error")).alias("error"),
        pl.when(invalid).then(0).otherwise(pl.col("attempts")).cast(pl.Int64).alias("attempts"),
        pl.col("request"),
    )


def results_frame(table: Table, outcomes: pl.DataFrame) -> pl.DataFrame:
    """``row``, the input columns under their own headers, then the outcome columns."""
    columns = [c for c in table.frame.columns if c != ROW]
    mine = outcomes.drop("community").rename(lambda c: _ours(c, columns))
    if table.frame.get_column(ROW).equals(outcomes.get_column(ROW)):
        # The usual case: one outcome per input row, in the same order; no join needed.
        joined = pl.concat([table.frame, mine.drop(ROW)], how="horizontal")
    else:
        joined = table.frame.join(mine, on=ROW, how="left", maintain_order="left")
    return joined.select(
        pl.col(ROW).alias(_ours("row", columns)),
        *columns,
        *(_ours(c, columns) for c in ("status", "http_status", "error", "attempts", "request")),
        # ``run --verify``: each row's read-back (reconcile.verify_command), when given.
        *(_ours(c, columns) for c in VERIFY_COLUMNS if c in outcomes.columns),
    )


#: The read-back's columns in a ``run --verify`` results file.
VERIFY_COLUMNS = ("verify_status", "verify_detail")


def _ours(name: str, input_columns: Sequence[str]) -> str:
    """Our result column's name: prefixed only where the input has a column of that name."""
    return f"{RESULT_PREFIX}{name}" if name in input_columns else name


def neutralised(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Prefix text cells that Excel would treat as a formula with a quote (values sent are not
    affected: this is only the file people open)."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(f"^{FORMULA_START}"))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c, dtype in frame.collect_schema().items()
        if dtype == pl.String
    )


def write_csvs_atomic(frames: Mapping[Path, pl.DataFrame]) -> None:
    """Write every frame at once on polars' streaming engine, each to a temporary file next to
    its path, then rename them all (:mod:`reconcile.atomic`): readers never see a partial file.

    Each temporary file is alone in a hidden folder of its own: when one sink fails (a full
    disk) polars may still be opening another's file after collect_all has raised."""
    with contextlib.ExitStack() as stack:
        temporary = {
            path: stack.enter_context(atomic.replacing(path, alone=True)) for path in frames
        }
        pl.collect_all(
            neutralised(frame.lazy()).sink_csv(temporary[path], include_bom=True, lazy=True)
            for path, frame in frames.items()
        )


def errors_frame(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of the results ``frame`` not applied: their row in the original file (messages
    such as duplicates name those rows), their original columns and the error: a file to fix
    and re-run (the row, status and error columns are ignored when it comes back)."""
    columns = [c for c in table.frame.columns if c != ROW]
    row, status, error = (_ours(c, columns) for c in ("row", "status", "error"))
    succeeded = pl.col(status).is_in([s.value for s in SUCCESS])
    return frame.filter(~succeeded).select(row, *columns, status, error)


def summary(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Counts per community and status (invalid rows may have no community)."""
    return (
        outcomes.group_by(pl.col("community").fill_null("(none)"), "status")
        .len("rows")
        .sort("community", "status")
    )


def all_succeeded(outcomes: pl.DataFrame) -> bool:
    """Every row applied, already applied or (dry run) would apply: exit code 0."""
    return bool(outcomes.select(pl.col("status").is_in([s.value for s in SUCCESS]).all()).item())


#: Fill colours of the status column in a results workbook.
STATUS_COLOURS = {
    Status.APPLIED: "#C6EFCE",
    Status.WOULD_APPLY: "#DDEBF7",
    Status.ALREADY_APPLIED: "#E2EFDA",
    Status.INVALID: "#FFC7CE",
    Status.REJECTED: "#FFC7CE",
    Status.FAILED: "#F8CBAD",
    Status.UNKNOWN: "#FFEB9C",
    Status.SKIPPED: "#EDEDED",
}


def write_results(table: Table, outcomes: pl.DataFrame, out: Path) -> None:
    """The results file (CSV, or a workbook when ``out`` ends in .xlsx) and the errors CSV."""
    frame = results_frame(table, outcomes)
    errors = errors_frame(table, frame)
    errors_path = out.with_name(f"{out.stem}.errors.csv")
    if out.suffix.lower() == ".xlsx":
        write_workbook_atomic({"Results": frame, "Errors": errors}, out)
        write_csvs_atomic({errors_path: errors})
    else:
        write_csvs_atomic({out: frame, errors_path: errors})


def write_workbook_atomic(sheets: Mapping[str, pl.DataFrame], path: Path) -> None:
    """One sheet per frame (results, errors): frozen header, autofilter, status coloured,
    widths fitted. Text stays text (``000456`` keeps its zeros when opened).

    Every cell is written as text or number, never as a formula (xlsxwriter's
    strings_to_formulas is off), so no value needs neutralising here.
    """
    import xlsxwriter

    with atomic.replacing(path) as tmp:
        options = {
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        }
        with xlsxwriter.Workbook(tmp, options) as workbook:
            for sheet, data in sheets.items():
                ours = next((c for c in (f"{RESULT_PREFIX}status", "status") if c in data), None)
                status_column = data.columns.index(ours) if ours is not None else None
                last_row = max(data.height, 1)
                formats = {
                    status.value: {
                        "type": "cell",
                        "criteria": "==",
                        "value": f'"{status.value}"',
                        "format": workbook.add_format({"bg_color": colour}),
                    }
                    for status, colour in STATUS_COLOURS.items()
                }
                data.write_excel(
                    workbook,
                    worksheet=sheet,
                    autofilter=True,
                    autofit=True,
                    freeze_panes=(1, 0),
                    header_format={"bold": True},
                    table_style=None,
                    include_header=True,
                )
                worksheet = workbook.get_worksheet_by_name(sheet)
                for rule in formats.values() if status_column is not None else ():
                    worksheet.conditional_format(1, status_column, last_row, status_column, rule)


SUCCEEDED = sorted(s.value for s in SUCCESS)


def sibling(out: Path, suffix: str) -> Path:
    """A file next to the results: ``results.csv`` -> ``results.<suffix>``."""
    return out.with_name(f"{out.stem}.{suffix}")


# A cell's value quoted right after its column's name ("Voucher Code: 'AB 1' is ..."), and row
# lists ("on rows 17, 18"): the parts of a message that vary from row to row under one rule.
_QUOTED_VALUE = r"^([^:']{1,80}): '(?:[^']|'')*'"
_ROW_LIST = r"\brows? \d+(?:, \d+)*(?: and \d+)?"


def error_kinds(outcomes: pl.DataFrame) -> pl.DataFrame:
    """One line per kind of error: the message with the cell's value taken out (``Voucher Code:
    '…' is not ...``), each part of a several-problem message on its own; columns ``kind``,
    ``status``, ``rows``, ``examples`` (the first five row numbers), most frequent first."""
    return (
        outcomes.lazy()
        .filter(pl.col("error").is_not_null() & ~pl.col("status").is_in(SUCCEEDED))
        .select(ROW, "status", kind=pl.col("error").str.split("; "))
        .explode("kind")
        .with_columns(
            pl.col("kind")
            .str.strip_chars()
            .str.replace(_QUOTED_VALUE, "$1: '…'")
            .str.replace_all(_ROW_LIST, "rows …")
        )
        .filter(pl.col("kind") != "")
        .group_by("kind")
        .agg(
            pl.col(ROW).n_unique().alias("rows"),
            pl.col(ROW).unique().sort().head(5).alias("examples"),
            pl.first("status"),
        )
        .sort(["rows", "kind"], descending=[True, False])
        .collect()
    )
