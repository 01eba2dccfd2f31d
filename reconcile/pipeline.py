"""read -> validate -> plan -> dispatch -> record -> report, as a library call.

The CLI is a thin layer over ``run``; tests and other programs can call it directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import structlog

from reconcile import results
from reconcile.intake import Table, read_table
from reconcile.job import Job
from reconcile.operations import Operation, get_operation
from reconcile.plan import Plan, plan
from reconcile.validate import validate

log = structlog.get_logger("reconcile")


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """A file read, validated and planned: nothing sent yet."""

    job: Job
    operation: Operation
    table: Table
    validated: pl.DataFrame
    plan: Plan


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    outcomes: pl.DataFrame
    results_path: Path
    interrupted_by: int | None = None

    @property
    def succeeded(self) -> bool:
        return results.all_succeeded(self.outcomes)


def sibling(out: Path, suffix: str) -> Path:
    """A file next to the results: ``results.csv`` -> ``results.<suffix>``."""
    return out.with_name(f"{out.stem}.{suffix}")


def prepare(input_path: Path, job: Job) -> Prepared:
    """Read and check everything; raises InputError/ConfigError before anything is sent."""
    operation = get_operation(job.operation)
    table = read_table(
        input_path,
        operation.column_names,
        [c.name for c in operation.columns if c.required],
    )
    validated = validate(
        table.operation_view(operation.column_names),
        operation,
        job.communities.keys(),
        table.canonical,
    )
    valid = validated.filter(pl.col("__error").is_null())
    log.info(
        "input.validated",
        path=str(input_path),
        rows=validated.height,
        valid=valid.height,
        invalid=validated.height - valid.height,
    )
    return Prepared(job, operation, table, validated, plan(valid, operation))


def finish(prepared: Prepared, request_outcomes: pl.DataFrame | None, out: Path) -> pl.DataFrame:
    """Per-row outcomes, written as the results file and the errors file."""
    outcomes = results.row_outcomes(
        prepared.validated, prepared.plan.rows, prepared.plan.requests, request_outcomes
    )
    results.write_csv_atomic(results.results_frame(prepared.table, outcomes), out)
    results.write_csv_atomic(
        results.errors_frame(prepared.table, outcomes), sibling(out, "errors.csv")
    )
    return outcomes


def dry_run(input_path: Path, job: Job, out: Path) -> RunResult:
    """Validate everything and write what would be sent; sends nothing, needs no keys."""
    prepared = prepare(input_path, job)
    outcomes = finish(prepared, None, out)
    return RunResult(outcomes=outcomes, results_path=out)
