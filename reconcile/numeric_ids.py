"""Identifiers a spreadsheet turned into numbers: refused, unless the job accepts the column.

An ID or code the API takes as a string (``Column.kind`` ``id``, and text columns of an
operation's ``id_families``) that arrives as a spreadsheet number has been parsed: ``000456``
became 456, ``12E3`` became 12000. In a workbook the reader reports such cells
(:mod:`reconcile.workbook_cells`); in a CSV the only traces a spreadsheet leaves are E-notation
(``1E5``, ``1.2E+18``) and a trailing ``.0`` (``456.0``), which no system issues as IDs: both are
reported here, with the cell kept as written in the errors file. A job's ``[numeric_ids]`` table
(``orderId = "accept"``) accepts such values in the columns it names, for teams whose IDs are
truly numbers. A CSV saved by a spreadsheet after it dropped leading zeros (``456``) leaves no
trace: that cannot be seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconcile.columns import ROW
from reconcile.exceptions import ConfigError
from reconcile.header_row import header_key
from reconcile.job import Job
from reconcile.lazy import pl
from reconcile.operations import rules
from reconcile.operations.base import TRIMMED, Operation
from reconcile.table import WORKBOOK_SUFFIXES, Table, family_column

#: A number as a spreadsheet writes it in E-notation: at most 15 digits before the exponent
#: (a spreadsheet keeps 15 significant digits), so a hex ID such as 5123456789012345678901e5
#: (22 digits, one e) is a value, not a number.
E_NOTATION = r"^[+-]?[0-9]{1,15}(\.[0-9]{1,14})?[eE][+-]?[0-9]{1,3}$"
#: A whole number with a trailing .0 (456.0): a number written by a spreadsheet or a script.
TRAILING_ZERO = r"^[+-]?[0-9]+\.0+$"
FIX = (
    "stored as a number: the spreadsheet may have dropped leading zeros or rewritten it. "
    "Format the column as Text and type the value again"
)


def id_columns(operation: Operation, names: Sequence[str]) -> list[str]:
    """The canonical columns among ``names`` that hold IDs the API takes as strings: the
    operation's ``id`` columns and the text-typed columns of its ``id_families``."""
    declared = {c.name for c in operation.columns if c.kind == "id"}
    return [n for n in names if n in declared or _id_family_column(operation, n)]


def _id_family_column(operation: Operation, name: str) -> bool:
    family = family_column(name, operation.id_families)
    return family is not None and family.rpartition(":")[2] in (family, "text")


def accepted(operation: Operation, job: Job) -> frozenset[str]:
    """The canonical ID columns whose numbers the job's ``[numeric_ids]`` accepts; a name that
    is not an ID column of the operation stops the run (a typo must not go unnoticed)."""
    by_key = {header_key(c.name): c.name for c in operation.columns if c.kind == "id"}
    chosen = set()
    for name, choice in job.numeric_ids.items():
        canonical = by_key.get(header_key(name)) or family_column(name, operation.id_families)
        if canonical is None or not id_columns(operation, [canonical]):
            listed = ", ".join(by_key.values())
            families = "".join(f", {f}.<key>" for f in operation.id_families)
            raise ConfigError(
                f"{job.path or 'job'}: numeric_ids: {name!r} is not an ID column of "
                f"{operation.name}. Fix: use one of {listed}{families}"
            )
        if choice == "accept":
            chosen.add(canonical.removesuffix(":text"))  # metadata.code:text is metadata.code
    return frozenset(chosen)


def cell_errors(table: Table, operation: Operation, job: Job) -> pl.DataFrame | None:
    """The file-format problems of ``table`` (``__row``, ``message``): a workbook's cell
    problems, or a CSV's IDs in E-notation or with a trailing .0; those of the columns the job's
    ``[numeric_ids]`` accepts are left out where acceptable."""
    accept = accepted(operation, job)
    if table.path.suffix.lower() in WORKBOOK_SUFFIXES:
        problems = table.cell_errors
    else:
        problems = csv_problems(table, operation)
    if problems is None or problems.is_empty():
        return None
    column = pl.col("column").str.replace(r":text$", "")
    kept = problems.filter(~(pl.col("acceptable") & column.is_in(sorted(accept))))
    return kept.select(ROW, "message")


def csv_problems(table: Table, operation: Operation) -> pl.DataFrame | None:
    """IDs written as a spreadsheet writes numbers (``1E5``, ``1.2E+18``, ``456.0``):
    ``__row``, ``column``, ``acceptable``, ``message``; None when there is no ID column."""
    columns = id_columns(operation, list(table.canonical))
    if not columns:
        return None
    # Columns whose own rules refuse Excel's long-number form (2.02641E+19) with their own
    # message: such a value gets that one message, not two.
    rounded = rules.not_excel_number().error
    covered = {
        name
        for name, column in operation.column_rules(()).items()
        if any(check.error == rounded for check in column.checks)
    }
    found = [_csv_column(table, name, name in covered) for name in columns]
    return pl.concat(found)


def _csv_column(table: Table, name: str, covered: bool) -> pl.DataFrame:
    header = table.canonical[name]
    value = pl.col(header).str.strip_chars(TRIMMED)
    exponent = value.str.contains(E_NOTATION)
    if covered:
        exponent = exponent & ~value.str.contains(rules.EXCEL_NUMBER)
    trailing = value.str.contains(TRAILING_ZERO)
    number = value.cast(pl.Float64, strict=False)
    meaning = (
        pl.when(number.abs() < 1e15)
        .then(number.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(number.cast(pl.String))
    )
    written = (
        pl.when(exponent).then(pl.lit("in E-notation")).otherwise(pl.lit("with a trailing .0"))
    )
    accept = f'. If these IDs are truly numbers, set numeric_ids.{name} = "accept" in the job'
    return table.frame.filter((exponent | trailing).fill_null(False)).select(
        pl.col(ROW).cast(pl.Int64),
        pl.lit(name).alias("column"),
        pl.lit(True).alias("acceptable"),
        pl.format(
            "{}: '{}' is the number {} written {} (a spreadsheet wrote it, no system issues "
            "such IDs): {}{}",
            pl.lit(header),
            pl.col(header),
            meaning.fill_null(value),
            written,
            pl.lit(FIX),
            pl.lit(accept),
        ).alias("message"),
    )
