"""Rows an analyst adds around the data that are not records: a total row at the end.

A trailing row whose ID cells are blank and that says TOTAL (``Total``, ``Grand total``,
``Sum``, ``Subtotal``) in some cell, or holds a SUM formula (a workbook), is the sheet's total,
not a correction: it is set aside with one note ("looks like a total row ...: not sent")
instead of an error per missing cell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconcile.columns import ROW
from reconcile.lazy import pl
from reconcile.operations.base import Column
from reconcile.table import Table

#: A cell that labels a total row.
TOTAL_LABEL = r"(?i)^\s*(grand\s+)?(sub\s*)?(total|sum)\b"


def key_headers(table: Table, columns: Sequence[Column]) -> list[str]:
    """The file's headers of the columns that name a row's record: the required columns
    besides ``community``."""
    return [
        table.canonical[c.name]
        for c in columns
        if c.required and c.name != "community" and c.name in table.canonical
    ]


def total_rows(table: Table, columns: Sequence[Column]) -> pl.DataFrame:
    """``__row`` and ``message`` of the total rows at the end of ``table``."""
    keys = key_headers(table, columns)
    frame = table.frame
    if not keys or frame.is_empty():
        return pl.DataFrame(schema={ROW: pl.Int64, "message": pl.String})
    names = [n for n in frame.columns if n != ROW]
    blank = pl.all_horizontal(
        pl.col(k).is_null() | (pl.col(k).str.strip_chars() == "") for k in keys
    )
    # After the last row that names a record: no later row has an ID.
    trailing = (~blank).cast(pl.Int32).cum_sum(reverse=True) == 0
    label = pl.coalesce(
        pl.when(pl.col(n).str.contains(TOTAL_LABEL)).then(
            pl.format("'{}' in {}", pl.col(n).str.strip_chars(), pl.lit(n))
        )
        for n in names
    )
    summed = pl.col(ROW).is_in(sorted(table.sum_rows))
    why = pl.concat_str(
        label, pl.when(summed).then(pl.lit("a SUM formula")), separator=", ", ignore_nulls=True
    )
    missing = " and ".join(keys)
    return frame.filter(trailing & blank & (label.is_not_null() | summed)).select(
        ROW,
        pl.format(
            "row {} looks like a total row ({}, no {}): not sent",
            pl.col(ROW),
            why,
            pl.lit(missing),
        ).alias("message"),
    )


def without_totals(table: Table, columns: Sequence[Column]) -> tuple[Table, list[str]]:
    """``table`` without its total rows, and a note for each (added to its notes)."""
    found = total_rows(table, columns)
    if found.is_empty():
        return table, []
    notes = [f"{table.path.name}: {m}" for m in found.get_column("message").to_list()]
    kept = table.frame.filter(~pl.col(ROW).is_in(found.get_column(ROW).implode()))
    return dataclasses.replace(table, frame=kept, notes=(*table.notes, *notes)), notes
