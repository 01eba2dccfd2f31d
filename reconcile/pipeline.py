"""read -> validate -> plan -> dispatch -> record -> report, as a library call.

The CLI is a thin layer over ``run``; tests and other programs can call it directly.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
from collections.abc import Mapping
from pathlib import Path

import anyio
import polars as pl
import structlog

from reconcile import logs, results
from reconcile.client import make_client
from reconcile.dispatch import Dispatcher, PlannedRequest, RequestOutcome
from reconcile.exceptions import ConfigError
from reconcile.intake import Table, read_table
from reconcile.job import Job
from reconcile.operations import Operation, get_operation
from reconcile.plan import Plan, plan
from reconcile.progress import ProgressReporter
from reconcile.validate import validate

log = structlog.get_logger("reconcile")
#: uvloop: a cheaper event loop, for CPU per request (bench/README.md).
EVENT_LOOP = {"use_uvloop": True}


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


def resolve_credentials(
    operation: Operation,
    job: Job,
    communities: list[str],
    environ: Mapping[str, str],
    given: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, str] | str]:
    """Each community's secrets from its environment variables, or why it has none.

    ``given`` supplies secrets directly (the in-process sandbox knows its own keys). A job file
    that does not say where a credential lives is a ConfigError: nothing is sent.
    """
    resolved: dict[str, dict[str, str] | str] = {}
    for name in communities:
        if given and name in given:
            resolved[name] = dict(given[name])
            continue
        settings = job.communities[name]
        secrets: dict[str, str] = {}
        for credential in operation.credentials:
            variable = settings.credential_envs.get(credential)
            if variable is None:
                raise ConfigError(
                    f"{job.path or 'job'}: [communities.{name}] has no {credential}_env. "
                    f'Fix: add {credential}_env = "SOME_VARIABLE" and export that variable.'
                )
            value = environ.get(variable, "")
            if not value:
                secrets = {}
                resolved[name] = f"environment variable {variable} is not set"
                break
            secrets[credential] = value
        if secrets:
            resolved[name] = secrets
    for value in resolved.values():
        if isinstance(value, dict):
            for secret in value.values():
                logs.register_secret(secret)
    return resolved


def planned_requests(prepared: Prepared) -> list[PlannedRequest]:
    """The plan's requests as values for the dispatcher (the per-request part of the run)."""
    frame = prepared.plan.requests
    return [
        PlannedRequest(
            request_id=row["__request"],
            community=row["community"],
            method=row["method"],
            path=row["path"],
            body=row["body"],
            repeatable=row["repeatable"],
        )
        for row in frame.iter_rows(named=True)
    ]


def outcomes_frame(outcomes: list[RequestOutcome]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "__request": [o.request_id for o in outcomes],
            "status": [o.status.value for o in outcomes],
            "http_status": [o.http_status for o in outcomes],
            "error": [o.error for o in outcomes],
            "attempts": [o.attempts for o in outcomes],
        },
        schema=results.OUTCOME_SCHEMA,
    )


async def _dispatch(
    prepared: Prepared,
    requests: list[PlannedRequest],
    credentials: Mapping[str, Mapping[str, str] | str],
    *,
    force: bool,
    quiet: bool,
    handle_signals: bool,
) -> tuple[list[RequestOutcome], int | None]:
    job = prepared.job
    stop = anyio.Event()
    received: list[int] = []
    max_connections = (
        sum(job.communities[c].concurrency for c in {r.community for r in requests}) or 1
    )
    totals: dict[str, int] = {}
    for request in requests:
        totals[request.community] = totals.get(request.community, 0) + 1
    async with make_client(
        timeout_seconds=job.timeout_seconds, max_connections=max_connections
    ) as client:
        with ProgressReporter(totals, quiet=quiet) as progress:
            dispatcher = Dispatcher(
                operation=prepared.operation,
                job=job,
                client=client,
                stop=stop,
                progress=progress,
                force=force,
            )
            async with anyio.create_task_group() as group:
                work = anyio.CancelScope()

                async def watch_signals() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for signum in signals:
                            if received:
                                work.cancel()  # a second signal: stop waiting for in-flight
                                continue
                            received.append(signum)
                            log.warning("run.interrupted", signal=signal.Signals(signum).name)
                            stop.set()
                            # In-flight requests get a bounded time to finish.
                            group.start_soon(_cancel_after, work, job.interrupt_grace_seconds)

                if handle_signals:
                    group.start_soon(watch_signals)
                with work:
                    outcomes = await dispatcher.run(requests, credentials)
                if work.cancelled_caught:
                    outcomes = [dispatcher.outcomes[r.request_id] for r in requests]
                group.cancel_scope.cancel()
    return outcomes, (received[0] if received else None)


async def _cancel_after(scope: anyio.CancelScope, seconds: float) -> None:
    await anyio.sleep(seconds)
    scope.cancel()


def apply(
    input_path: Path,
    job: Job,
    out: Path,
    *,
    environ: Mapping[str, str],
    given_credentials: Mapping[str, Mapping[str, str]] | None = None,
    force: bool = False,
    quiet: bool = False,
    handle_signals: bool = True,
) -> RunResult:
    """Validate, then send the valid rows; results are written even when interrupted."""
    prepared = prepare(input_path, job)
    requests = planned_requests(prepared)
    communities = sorted({r.community for r in requests})
    credentials = resolve_credentials(
        prepared.operation, job, communities, environ, given_credentials
    )
    outcomes, signum = anyio.run(
        functools.partial(
            _dispatch,
            prepared,
            requests,
            credentials,
            force=force,
            quiet=quiet,
            handle_signals=handle_signals,
        )
    )
    frame = finish(prepared, outcomes_frame(outcomes), out)
    return RunResult(outcomes=frame, results_path=out, interrupted_by=signum)
