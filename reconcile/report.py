"""What a person sees at the end of a run: a summary table per community and status."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import structlog
from rich.console import Console
from rich.table import Table

from reconcile.results import summary

log = structlog.get_logger("reconcile")


def print_summary(outcomes: pl.DataFrame, out: Path) -> None:
    """A table on a terminal; one structured event otherwise (cron logs are read by machines)."""
    counts = summary(outcomes)
    log.info(
        "run.summary",
        results=str(out),
        counts=[dict(zip(counts.columns, r, strict=True)) for r in counts.iter_rows()],
    )
    if not sys.stdout.isatty():
        return
    table = Table(title=f"reconcile: {outcomes.height} rows -> {out}")
    for column in counts.columns:
        table.add_column(column, justify="right" if column == "rows" else "left")
    for community, status, rows in counts.iter_rows():
        table.add_row(community, status, str(rows))
    Console().print(table)
