"""What the operator sees at the end of a run: the counts, the files to open, the first errors
and what the exit code means; and the error kinds the report lists, grouped by rule."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import structlog
from rich.console import Console
from rich.table import Table

from reconcile import exit_codes
from reconcile.columns import ROW
from reconcile.results import SUCCEEDED, sibling, summary

log = structlog.get_logger("reconcile")

#: Error rows shown on the terminal (the errors file has all of them).
SHOWN_ERRORS = 3


def print_summary(
    outcomes: pl.DataFrame,
    out: Path,
    manifest: Mapping[str, object] | None = None,
    *,
    approval_job: Path | None = None,
) -> None:
    """One structured event (at warning when a row did not apply: cron logs are read by
    machines), and on a terminal the table, the files to open, the first error rows, the exit
    code's meaning and, for a job with an approval step (``approval_job``), the approval command."""
    manifest = manifest or {}
    counts = summary(outcomes)
    run_id = manifest.get("run_id")
    exit_code = manifest.get("exit_code")
    level = log.warning if exit_code not in (None, exit_codes.OK) else log.info
    level(
        "run.summary",
        run_id=run_id,
        exit_code=exit_code,
        results=str(out),
        audit_head=manifest.get("audit_head"),
        counts=[dict(zip(counts.columns, r, strict=True)) for r in counts.iter_rows()],
    )
    plan_sha256 = manifest.get("plan_sha256")
    planned = bool(manifest.get("dry_run") and plan_sha256)
    if planned:
        log.info("plan.recorded", run_id=run_id, plan_sha256=plan_sha256)
    if not sys.stdout.isatty():
        return
    # The run id is a line of its own below: in the title rich wraps it on a narrow table.
    table = Table(title=f"{outcomes.height} rows")
    for column in counts.columns:
        table.add_column(column, justify="right" if column == "rows" else "left")
    for community, status, rows in counts.iter_rows():
        table.add_row(community, status, str(rows))
    Console().print(table)
    # Plain prints, never wrapped: a path must stay one line to be copied.
    for line in screen_lines(outcomes, out, manifest, approval_job=approval_job):
        print(line)


def screen_lines(
    outcomes: pl.DataFrame,
    out: Path,
    manifest: Mapping[str, object],
    *,
    approval_job: Path | None = None,
) -> list[str]:
    """The lines under the table: files to open, first errors, exit code, approval step."""
    lines = [f"results: {out}"]
    for label, suffix in (("errors:  ", "errors.csv"), ("report:  ", "report.html")):
        path = sibling(out, suffix)
        if path.exists():
            lines.append(f"{label}{path}")
    failing = outcomes.filter(~pl.col("status").is_in(SUCCEEDED) & pl.col("error").is_not_null())
    if failing.height:
        lines.append(f"first of {failing.height} rows that did not apply:")
        for row, community, status, error in (
            failing.sort(ROW)
            .head(SHOWN_ERRORS)
            .select(ROW, "community", "status", "error")
            .iter_rows()
        ):
            lines.append(f"  row {row} ({community or 'no community'}) {status}: {error}")
    if manifest.get("run_id"):
        lines.append(f"run id:  {manifest['run_id']}")
    if manifest.get("audit_head"):
        lines.append(f"audit chain head: {manifest['audit_head']} (keep a copy outside the ledger)")
    exit_code = manifest.get("exit_code")
    if isinstance(exit_code, int):
        lines.append(exit_codes.meaning(exit_code))
    if manifest.get("dry_run") and manifest.get("plan_sha256") and approval_job is not None:
        lines.append(
            "plan recorded: a colleague approves it with "
            f"'reconcile approve {manifest['run_id']} --job {approval_job}'"
        )
    return lines
