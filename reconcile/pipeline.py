"""read -> validate -> plan -> (ledger) -> dispatch -> record -> report, as a library call.

The CLI is a thin layer over ``execute``; tests and other programs can call it directly. A large
CSV file's dry run takes the same steps bucket by bucket (:mod:`reconcile.buckets`); the run's
record, manifest and report are :mod:`reconcile.run_record`.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import structlog

from reconcile import (
    approval,
    buckets,
    locks,
    numeric_ids,
    preflight,
    results,
    sheet_shape,
    signals,
    suggestions,
)
from reconcile.columns import ERROR, REQUEST_ID, ROW
from reconcile.credentials import Credentials, resolve_credentials
from reconcile.dispatch import PlannedRequest, SendEvent
from reconcile.exceptions import ConfigError
from reconcile.intake import read_table
from reconcile.job import Job
from reconcile.ledger import Ledger, TooManyToHold
from reconcile.operations import Operation, get_operation
from reconcile.outcome import RequestOutcome, Selection, Status
from reconcile.plan import plan_requests
from reconcile.plan_store import plan_rows
from reconcile.queueing import run_lock
from reconcile.recorder import LedgerRecorder
from reconcile.results import sibling
from reconcile.run_record import Run, finish, plan_fields, recorded_run
from reconcile.run_types import NOT_SELECTED, Prepared, RunOptions, RunResult
from reconcile.sending import EVENT_LOOP, send_requests
from reconcile.table import Table
from reconcile.triage import decided_outcomes, outcomes_frame, planned, triage, with_fingerprints
from reconcile.validate import validate

log = structlog.get_logger("reconcile")


def prepare(input_path: Path, job: Job, *, sheet: str | None = None) -> Prepared:
    """Read and check everything; raises InputError/ConfigError before anything is sent."""
    operation = get_operation(job.operation)
    table = read_table(
        input_path,
        operation.columns,
        sheet=sheet,
        families=operation.families,
        id_families=operation.id_families,
    )
    header_notes = list(table.notes)
    table, totals = sheet_shape.without_totals(table, operation.columns)
    for note in totals:
        log.warning("input.total_row", path=str(input_path), message=note)
    log.info(
        "input.header",
        path=str(input_path),
        sheet=table.sheet,
        header_row=table.header_row,
        **({"message": " ".join(header_notes)} if header_notes else {}),
    )
    prepared = _prepared(table, job, operation)
    _log_validated(input_path, prepared.validated.height, _invalid(prepared))
    return prepared


def _prepared(table: Table, job: Job, operation: Operation) -> Prepared:
    """``table`` validated and planned."""
    names = operation.column_names + operation.family_columns(list(table.canonical))
    view = table.operation_view(names)
    if job.fold_communities:
        view = view.with_columns(folded_communities(pl.col("community"), job.communities))
    validated = validate(
        view,
        operation,
        job.communities.keys(),
        table.canonical,
        numeric_ids.cell_errors(table, operation, job),
    )
    valid = validated.filter(pl.col(ERROR).is_null())
    return Prepared(job, operation, table, validated, plan_requests(valid, operation, job.options))


def folded_communities(cell: pl.Expr, communities: Collection[str]) -> pl.Expr:
    """``cell`` as the job's community it names once case and spaces are folded (the job's
    ``fold_communities``); other values as they are."""
    names = {suggestions.folded(name): name for name in communities}
    key = cell.str.strip_chars().str.replace_all(r"\s+", " ").str.to_lowercase()
    return key.replace_strict(names, default=cell, return_dtype=pl.String).alias("community")


def _invalid(prepared: Prepared) -> int:
    return int(prepared.validated.get_column(ERROR).is_not_null().sum())


def _log_validated(path: Path, rows: int, invalid: int, **more: Any) -> None:
    log.info(
        "input.validated", path=str(path), rows=rows, valid=rows - invalid, invalid=invalid, **more
    )


def job_lock(
    job: Job, communities: Collection[str] | None = None
) -> contextlib.AbstractContextManager[None]:
    """The run's locks (:mod:`reconcile.locks`): two real runs that could send the same
    requests never overlap (RunLockedError at once)."""
    return locks.job_lock(job, communities)


def execute(input_path: Path, job: Job, out: Path, options: RunOptions | None = None) -> RunResult:
    """One run: validate, consult the ledger, send (unless a dry run), record, report.

    Raises InputError/ConfigError (nothing sent) and RunLockedError (another run of the job).
    """
    options = options or RunOptions()
    unknown = sorted((options.communities or frozenset()) - set(job.communities))
    if unknown:
        raise ConfigError(
            f"--community {', '.join(unknown)}: not in {job.path or 'the job'} "
            f"(known: {', '.join(sorted(job.communities))})"
        )
    if options.plan is not None and options.force:
        approval.refuse_forced(job.storage, options.plan.recorded.run_id, _user(options))
    if job.require_approval and not options.dry_run and options.plan is None:
        raise approval.ApprovalError(
            f"{job.path or 'the job'} sets require_approval: a real run applies an approved "
            "plan only. The flow: 1. reconcile run FILE --job JOB --dry-run (records a plan, "
            "prints its run id); 2. a colleague: reconcile approve RUN_ID --job JOB; "
            "3. reconcile run --plan RUN_ID --job JOB"
        )
    clash = preflight.input_clash(input_path, out)
    if clash:
        raise preflight.PreflightError(clash)
    if _in_buckets(input_path, out, options):
        _preflight(job, out, options, None)
        large = _execute_in_buckets(input_path, job, out, options)
        if large is not None:
            return large
    if preflight.places(job, out):  # the lock itself needs the state dir: say all, unlocked
        _preflight(job, out, options, prepare(input_path, job, sheet=options.sheet))
    # Dry runs send nothing: an auditor's rehearsal never blocks the nightly run.
    unlocked = options.dry_run or options.lock_held
    with contextlib.nullcontext() if unlocked else run_lock(job, options):
        prepared = prepare(input_path, job, sheet=options.sheet)
        _preflight(job, out, options, prepared)
        return _execute_locked(prepared, input_path, out, options)


def _preflight(job: Job, out: Path, options: RunOptions, prepared: Prepared | None) -> None:
    """Everything the run writes or needs, before anything is recorded or sent
    (:mod:`reconcile.preflight`); a real run's credentials for the communities it sends to."""
    send_to: list[str] = []
    if prepared is not None and not options.dry_run:
        communities = in_scope(prepared, options).get_column("community").unique()
        send_to = sorted(c for c in communities if c is not None)
    preflight.check(
        job,
        out,
        send_to=send_to,
        environ=options.environ,
        given=options.given_credentials,
    )


def _user(options: RunOptions) -> str:
    return approval.acting_user(options.environ or None)


def _in_buckets(input_path: Path, out: Path, options: RunOptions) -> bool:
    """A dry run of a large CSV file into CSV results is done in buckets (bounded memory)."""
    return (
        options.dry_run
        and options.plan is None
        and out.suffix.lower() != ".xlsx"
        and buckets.is_large(input_path)
    )


def _execute_locked(
    prepared: Prepared, input_path: Path, out: Path, options: RunOptions
) -> RunResult:
    if options.plan is not None:
        approval.check_plan(prepared, options.plan)
        approval.check_unapplied(prepared.job.storage, options.plan, _user(options))
    with recorded_run(prepared.job, input_path, prepared.table.sha256, out, options) as run:
        outcomes, signum, events = _row_outcomes(prepared, run)
        results.write_results(prepared.table, outcomes, out)
        # After the results file, not beside it in a second thread: both at once take a
        # million-row run's peak to the 1 GiB bound (bench/README.md).
        plan = plan_fields(run, lambda: plan_rows(outcomes))
        manifest = finish(run, outcomes, signum, events, plan)
        return RunResult(outcomes, manifest, Selection(options.communities))


def _execute_in_buckets(
    input_path: Path, job: Job, out: Path, options: RunOptions
) -> RunResult | None:
    """A large CSV file's dry run in hash buckets (:mod:`reconcile.buckets`): the outputs of a
    whole-file run in bounded memory; None when the file must be read whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as scratch:
        folder = Path(scratch)
        spilled = buckets.spill(input_path, get_operation(job.operation), folder / "rows")
        if spilled is None or not spilled.has_rows:
            return None
        with recorded_run(job, input_path, spilled.sha256, out, options) as run:
            invalid = 0

            def judged(table: Table) -> pl.DataFrame:
                nonlocal invalid
                prepared = _prepared(table, job, run.operation)
                invalid += _invalid(prepared)
                return _row_outcomes(prepared, run)[0]

            outputs = buckets.judge(spilled, folder, judged)
            outputs.write_results(out, sibling(out, "errors.csv"))
            outcomes = outputs.outcomes()
            _log_validated(input_path, outcomes.height, invalid, buckets=spilled.buckets)
            manifest = finish(run, outcomes, None, [], plan_fields(run, outputs.plan_rows))
            return RunResult(outcomes, manifest, Selection(options.communities))


def _row_outcomes(prepared: Prepared, run: Run) -> tuple[pl.DataFrame, int | None, list[SendEvent]]:
    """Per input row its outcome (sent, or what would happen), the signal that stopped the
    run, and the HTTP exchanges for the report."""
    request_outcomes, signum, events = _send_or_show(prepared, run.ledger, run.run_id, run.options)
    outcomes = results.row_outcomes(
        prepared.validated, prepared.plan.rows, prepared.plan.requests, request_outcomes
    )
    if run.options.communities is not None:
        outcomes = _skip_unselected(outcomes, run.options.communities)
    if run.options.plan is not None:
        outcomes = approval.skip_unplanned(outcomes, run.options.plan)
    return outcomes, signum, events


def _skip_unselected(outcomes: pl.DataFrame, selected: frozenset[str]) -> pl.DataFrame:
    """Rows of communities not selected: skipped, whatever they were (not this run's business)."""
    unselected = ~pl.col("community").is_in(sorted(selected)).fill_null(False)
    return results.skipped_where(outcomes, unselected, pl.lit(NOT_SELECTED))


def _would_happen(
    prepared: Prepared,
    requests: pl.DataFrame,
    ledger: Ledger,
    *,
    force: bool,
) -> pl.DataFrame:
    """A dry run's outcome per request: what the ledger decides (already applied, unknown),
    else would apply. Only requests the ledger may know need a fingerprint."""
    would_apply = results.would_apply(requests)
    if force:
        return would_apply
    known = ledger.known_targets(limit=requests.height)
    if not isinstance(known, TooManyToHold):
        requests = requests.join(known, on=["community", "method", "path"], how="semi")
    if requests.is_empty():
        return would_apply  # the common audit case: no hashing at all
    decided = decided_outcomes(
        triage(with_fingerprints(requests, prepared.job), ledger, prepared.job, force=False)
    )
    rest = would_apply.join(decided.select(REQUEST_ID), on=REQUEST_ID, how="anti")
    return pl.concat([decided, rest])


def in_scope(prepared: Prepared, options: RunOptions) -> pl.DataFrame:
    """The planned requests this run may send: of the selected communities, and with a plan
    only those of rows it would have applied (never a request outside the plan)."""
    requests = prepared.plan.requests
    if options.communities is not None:
        requests = requests.filter(pl.col("community").is_in(sorted(options.communities)))
    if options.plan is not None:
        approved_rows = options.plan.rows.filter(pl.col("status") == Status.WOULD_APPLY.value)
        allowed = prepared.plan.rows.join(
            approved_rows.select(pl.col("row").alias(ROW)), on=ROW, how="semi"
        )
        requests = requests.join(allowed.select(REQUEST_ID).unique(), on=REQUEST_ID, how="semi")
    return requests


def _send_or_show(
    prepared: Prepared, ledger: Ledger, run_id: str, options: RunOptions
) -> tuple[pl.DataFrame, int | None, list[SendEvent]]:
    """Per request: its outcome (dry run: what would happen), the signal that stopped us, and
    the HTTP exchanges for the report."""
    requests = in_scope(prepared, options)
    if options.dry_run:
        return _would_happen(prepared, requests, ledger, force=options.force), None, []
    triaged = triage(
        with_fingerprints(requests, prepared.job), ledger, prepared.job, force=options.force
    )
    decided = decided_outcomes(triaged)
    to_send = planned(triaged)
    communities = sorted({r.community for r in to_send})
    credentials = resolve_credentials(
        prepared.operation, prepared.job, communities, options.environ, options.given_credentials
    )
    try:
        sent, signum, events = _send(prepared, options, to_send, credentials, ledger, run_id)
    finally:
        signals.restore()  # the event loop put SIGTERM's default back
    return pl.concat([decided, outcomes_frame(sent)]), signum, events


def _send(
    prepared: Prepared,
    options: RunOptions,
    to_send: list[PlannedRequest],
    credentials: Mapping[str, Credentials],
    ledger: Ledger,
    run_id: str,
) -> tuple[list[RequestOutcome], int | None, list[SendEvent]]:
    return anyio.run(
        functools.partial(
            send_requests,
            prepared.operation,
            prepared.job,
            to_send,
            credentials,
            recorder=LedgerRecorder(ledger, run_id),
            force=options.force,
            quiet=options.quiet,
            handle_signals=options.handle_signals,
            on_progress=options.on_progress,
            cancel=options.cancel,
            on_answer=options.on_answer,
        ),
        backend_options=EVENT_LOOP,
    )
