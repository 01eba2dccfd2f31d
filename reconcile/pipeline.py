"""read -> validate -> plan -> (ledger) -> dispatch -> record -> report, as a library call.

The CLI is a thin layer over ``execute``; tests and other programs can call it directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import getpass
import json
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import structlog

from reconcile import __version__, approval, logs, report, results
from reconcile.client import make_client
from reconcile.dispatch import (
    Dispatcher,
    PlannedRequest,
    RequestOutcome,
    SendEvent,
)
from reconcile.exceptions import ConfigError
from reconcile.intake import ROW, Table, read_table
from reconcile.job import Job
from reconcile.ledger import IN_FLIGHT, Ledger, fingerprints, now_iso, run_lock
from reconcile.operations import Operation, get_operation
from reconcile.plan import REQUEST_ID, Plan, plan
from reconcile.progress import ProgressReporter
from reconcile.results import Status
from reconcile.retry import NOT_REPEATED
from reconcile.validate import validate

log = structlog.get_logger("reconcile")
#: uvloop: a cheaper event loop, for CPU per request (bench/README.md).
EVENT_LOOP = {"use_uvloop": True}
RESENT = "re-sent: the previous run stopped while this request was in flight"
#: Group commit: how long the ledger writer gathers in-flight records before committing (0: one
#: pass of the event loop, so every send that became ready meanwhile joins the commit), and how
#: long an outcome may wait for a commit (a crash in that window re-sends, never loses).
GATHER_SECONDS = 0.0
OUTCOME_DELAY_SECONDS = 0.1


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
    """Per-row outcomes, and the manifest (run id, counts, exit code) written beside them."""

    outcomes: pl.DataFrame
    manifest: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return int(self.manifest["exit_code"])


def sibling(out: Path, suffix: str) -> Path:
    """A file next to the results: ``results.csv`` -> ``results.<suffix>``."""
    return out.with_name(f"{out.stem}.{suffix}")


def prepare(input_path: Path, job: Job, *, sheet: str | None = None) -> Prepared:
    """Read and check everything; raises InputError/ConfigError before anything is sent."""
    operation = get_operation(job.operation)
    table = read_table(input_path, operation.columns, sheet=sheet, families=operation.families)
    names = operation.column_names + operation.family_columns(list(table.canonical))
    validated = validate(
        table.operation_view(names),
        operation,
        job.communities.keys(),
        table.canonical,
        table.cell_errors,
    )
    valid = validated.filter(pl.col("__error").is_null())
    log.info(
        "input.validated",
        path=str(input_path),
        rows=validated.height,
        valid=valid.height,
        invalid=validated.height - valid.height,
    )
    return Prepared(job, operation, table, validated, plan(valid, operation, job.options))


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
        found: dict[str, str] = {}
        for credential in operation.credentials:
            variable = settings.credential_envs.get(credential)
            if variable is None:
                raise ConfigError(
                    f"{job.path or 'job'}: [communities.{name}] has no {credential}_env. "
                    f'Fix: add {credential}_env = "SOME_VARIABLE" and export that variable.'
                )
            value = environ.get(variable, "")
            if not value:
                found = {}
                resolved[name] = f"environment variable {variable} is not set"
                break
            found[credential] = value
        if found:
            resolved[name] = found
    for secrets_or_reason in resolved.values():
        if isinstance(secrets_or_reason, dict):
            for secret in secrets_or_reason.values():
                logs.register_secret(secret)
    return resolved


def with_fingerprints(prepared: Prepared, requests: pl.DataFrame | None = None) -> pl.DataFrame:
    """The plan's requests with a ``fingerprint`` column (sha256: stable across versions)."""
    requests = prepared.plan.requests if requests is None else requests
    job = prepared.job
    return requests.with_columns(fingerprints(job.base_url, job.operation, requests))


def triage(requests: pl.DataFrame, ledger: Ledger, job: Job, *, force: bool) -> pl.DataFrame:
    """Decide per request from the ledger's history: ``decided`` status (or null: send) and a
    ``note`` for the results.

    Applied before: ``already_applied``, unless another request changed (or may have changed)
    the same record since: then it is re-sent if repeatable, else ``unknown`` (a correction
    reverted by a later one is not "already applied"). In flight or unknown before, and not
    repeatable: ``unknown`` (a refund must never be sent twice blindly). In flight before and
    repeatable: re-sent, saying so. ``--force`` sends everything.
    """
    prior = ledger.prior(requests.get_column("fingerprint").unique().to_list())
    history = pl.DataFrame(
        {
            "fingerprint": list(prior),
            "prior_state": [p.state for p in prior.values()],
            "prior_run": [p.run_id for p in prior.values()],
            "prior_at": [p.updated_at for p in prior.values()],
        },
        schema={
            "fingerprint": pl.String,
            "prior_state": pl.String,
            "prior_run": pl.String,
            "prior_at": pl.String,
        },
    )
    joined = requests.join(history, on="fingerprint", how="left", maintain_order="left")
    joined = joined.join(
        _changed_since(joined, ledger, job), on="fingerprint", how="left", maintain_order="left"
    )
    state = pl.col("prior_state")
    uncertain = state.is_in([IN_FLIGHT, Status.UNKNOWN.value])
    superseded = (state == Status.APPLIED.value) & pl.col("changed_run").is_not_null()
    return joined.with_columns(
        pl.when(pl.lit(force))
        .then(pl.lit(None, pl.String))
        .when(superseded & pl.col("repeatable"))
        .then(pl.lit(None, pl.String))
        .when(superseded)
        .then(pl.lit(Status.UNKNOWN.value))
        .when(state == Status.APPLIED.value)
        .then(pl.lit(Status.ALREADY_APPLIED.value))
        .when(uncertain & ~pl.col("repeatable"))
        .then(pl.lit(Status.UNKNOWN.value))
        .alias("decided"),
        pl.when(~pl.lit(force) & superseded & pl.col("repeatable"))
        .then(
            pl.format(
                "re-sent: run {} changed this record at {}, after run {} had applied this",
                pl.col("changed_run"),
                pl.col("changed_at"),
                pl.col("prior_run"),
            )
        )
        .when(~pl.lit(force) & superseded)
        .then(
            pl.format(
                "applied by run {} at {}, then run {} changed this record at {}: check it "
                "before sending it again (--force)",
                pl.col("prior_run"),
                pl.col("prior_at"),
                pl.col("changed_run"),
                pl.col("changed_at"),
            )
        )
        .when(~pl.lit(force) & (state == Status.APPLIED.value))
        .then(pl.format("already applied by run {} at {}", pl.col("prior_run"), pl.col("prior_at")))
        .when(~pl.lit(force) & uncertain & ~pl.col("repeatable"))
        .then(
            pl.format(
                "{} (run {} left it uncertain; --force re-sends)",
                pl.lit(NOT_REPEATED),
                pl.col("prior_run"),
            )
        )
        .when(state == IN_FLIGHT)
        .then(pl.lit(RESENT))
        .when(state == Status.UNKNOWN.value)
        .then(
            pl.format("re-sent: run {} could not tell whether it was applied", pl.col("prior_run"))
        )
        .alias("note"),
    )


def _changed_since(requests: pl.DataFrame, ledger: Ledger, job: Job) -> pl.DataFrame:
    """Per fingerprint applied before: the latest other request on the same record after it
    (``changed_run``, ``changed_at``), if any."""
    applied = requests.filter(pl.col("prior_state") == Status.APPLIED.value).select(
        "fingerprint", "community", pl.col("target").cast(pl.String), "prior_at"
    )
    changes = ledger.later_changes(
        job.base_url, job.operation, applied.select("community", "target")
    )
    return (
        applied.join(changes, on=["community", "target"])
        .filter(
            (pl.col("changed_by") != pl.col("fingerprint"))
            & (pl.col("changed_at") > pl.col("prior_at"))
        )
        .sort("changed_at")
        .group_by("fingerprint")
        .agg(pl.col("changed_run").last(), pl.col("changed_at").last())
    )


def _decided_outcomes(triaged: pl.DataFrame) -> pl.DataFrame:
    return triaged.filter(pl.col("decided").is_not_null()).select(
        "__request",
        pl.col("decided").alias("status"),
        pl.lit(None, pl.Int64).alias("http_status"),
        pl.col("note").alias("error"),
        pl.lit(0, pl.Int64).alias("attempts"),
    )


def planned(triaged: pl.DataFrame) -> list[PlannedRequest]:
    """The requests to send, as values for the dispatcher (the per-request part of the run)."""
    return [
        PlannedRequest(
            request_id=row["__request"],
            community=row["community"],
            method=row["method"],
            path=row["path"],
            body=row["body"],
            target=row["target"],
            repeatable=row["repeatable"],
            fingerprint=row["fingerprint"],
            note=row["note"],
        )
        for row in triaged.filter(pl.col("decided").is_null()).iter_rows(named=True)
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


class LedgerRecorder:
    """Dispatch -> ledger, with group commit: the in-flight records of requests about to go out
    and the outcomes that came back are written together in one transaction, in a worker thread;
    a request leaves only after the transaction holding its in-flight record has committed."""

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self.ledger, self.run_id = ledger, run_id
        self._requests: dict[int, PlannedRequest] = {}
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._batch_committed = anyio.Event()
        self._wake = anyio.Event()

    async def sending(self, request: PlannedRequest) -> None:
        self._requests[request.request_id] = request
        self._pending.append(self.ledger.sending_statement(*self._identity(request)))
        committed = self._batch_committed  # everyone in this batch waits on the same commit
        self._wake.set()
        await committed.wait()

    def finished(self, outcome: RequestOutcome) -> None:
        request = self._requests.get(outcome.request_id)
        if request is None:
            return  # never sent (skipped, or failed before sending): nothing to remember
        self._pending.append(
            self.ledger.finished_statement(
                *self._identity(request),
                state=Status.UNKNOWN.value if outcome.maybe_applied else outcome.status.value,
                http_status=outcome.http_status,
                error=outcome.error,
                attempts=outcome.attempts,
            )
        )

    def _identity(self, request: PlannedRequest) -> tuple[str, str, str, str, str, str | None]:
        """What a ledger record says of its request: run, fingerprint, community, method, path,
        target."""
        return (
            self.run_id,
            request.fingerprint,
            request.community,
            request.method,
            request.path,
            request.target,
        )

    async def write_forever(self) -> None:
        """The group-commit loop; cancel it after ``flush``. A request about to be sent wakes
        it; outcomes ride along with the next commit, or wait at most ``OUTCOME_DELAY``."""
        while True:
            with anyio.move_on_after(OUTCOME_DELAY_SECONDS):
                await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(GATHER_SECONDS)  # the other sends of this moment join the commit
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        committed, self._batch_committed = self._batch_committed, anyio.Event()
        if batch:
            self.ledger.commit(batch)  # WAL, synchronous=NORMAL: a write, no fsync
        committed.set()


async def _dispatch(
    prepared: Prepared,
    requests: list[PlannedRequest],
    credentials: Mapping[str, Mapping[str, str] | str],
    *,
    recorder: LedgerRecorder | None = None,
    force: bool,
    quiet: bool,
    handle_signals: bool,
    on_progress: Callable[[str, Status], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[list[RequestOutcome], int | None, list[SendEvent]]:
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
        with ProgressReporter(totals, quiet=quiet) as reporter:

            def progress(community: str, status: Status) -> None:
                reporter(community, status)
                if on_progress is not None:
                    on_progress(community, status)

            dispatcher = Dispatcher(
                operation=prepared.operation,
                job=job,
                client=client,
                stop=stop,
                recorder=recorder,
                progress=progress,
                force=force,
            )
            async with anyio.create_task_group() as group:
                work = anyio.CancelScope()

                def interrupt(signum: int) -> None:
                    if received:
                        work.cancel()  # a second signal: stop waiting for in-flight
                        return
                    received.append(signum)
                    log.warning("run.interrupted", signal=signal.Signals(signum).name)
                    stop.set()
                    # In-flight requests get a bounded time to finish.
                    group.start_soon(_cancel_after, work, job.interrupt_grace_seconds)

                async def watch_signals() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for signum in signals:
                            interrupt(signum)

                async def watch_cancel(event: threading.Event) -> None:
                    while not event.is_set():  # a thread's request to stop, as Ctrl-C
                        await anyio.sleep(CANCEL_POLL_SECONDS)
                    interrupt(signal.SIGINT)

                if handle_signals:
                    group.start_soon(watch_signals)
                if cancel is not None:
                    group.start_soon(watch_cancel, cancel)
                if recorder is not None:
                    group.start_soon(recorder.write_forever)
                with work:
                    await dispatcher.run(requests, credentials)
                outcomes = [dispatcher.outcomes[r.request_id] for r in requests]
                if recorder is not None:
                    with anyio.CancelScope(shield=True):
                        await recorder.flush()  # the last outcomes, before anything else
                group.cancel_scope.cancel()
    return outcomes, (received[0] if received else None), dispatcher.events


CANCEL_POLL_SECONDS = 0.05


async def _cancel_after(scope: anyio.CancelScope, seconds: float) -> None:
    await anyio.sleep(seconds)
    scope.cancel()


def _new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _counts(outcomes: pl.DataFrame) -> dict[str, Any]:
    per_status = dict(outcomes.group_by("status").len().sort("status").iter_rows())
    per_community: dict[str, dict[str, int]] = {}
    for community, status, rows in results.summary(outcomes).iter_rows():
        per_community.setdefault(community, {})[status] = rows
    return {"rows": outcomes.height, "per_status": per_status, "per_community": per_community}


def _write_json_atomic(value: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to run, besides the job: what the command line adds."""

    dry_run: bool = False
    force: bool = False
    quiet: bool = False
    handle_signals: bool = True
    communities: frozenset[str] | None = None
    """Only these communities' rows are sent; the others are skipped ("not selected")."""
    sheet: str | None = None
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict)
    given_credentials: Mapping[str, Mapping[str, str]] | None = None
    lock_held: bool = False
    """The caller holds the job's run lock (``job_lock``) for several inputs."""
    plan: approval.ApprovedPlan | None = None
    """Apply this approved plan: only if the file and job still make exactly its requests."""
    on_progress: Callable[[str, Status], None] | None = None
    """Called with (community, status) as each request ends (the console's live progress)."""
    cancel: threading.Event | None = None
    """Set from any thread to stop the run as Ctrl-C does: no new requests, in-flight ones get
    ``interrupt_grace_seconds``, results written, exit code 130."""


NOT_SELECTED = "not selected (--community)"


def job_lock(job: Job) -> contextlib.AbstractContextManager[Path]:
    """The job's run lock: two real runs of one job never overlap (RunLockedError at once)."""
    job_key = str(job.path.resolve()) if job.path else f"{job.operation} {job.base_url}"
    return run_lock(job.state_dir, job_key)


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
    if job.require_approval and not options.dry_run and options.plan is None:
        raise approval.ApprovalError(
            f"{job.path or 'the job'} sets require_approval: a real run applies an approved "
            "plan only. The flow: 1. reconcile run FILE --job JOB --dry-run (records a plan, "
            "prints its run id); 2. a colleague: reconcile approve RUN_ID --job JOB; "
            "3. reconcile run --plan RUN_ID --job JOB"
        )
    # Dry runs send nothing: an auditor's rehearsal never blocks the nightly run.
    unlocked = options.dry_run or options.lock_held
    with contextlib.nullcontext() if unlocked else job_lock(job):
        prepared = prepare(input_path, job, sheet=options.sheet)
        return _execute_locked(prepared, input_path, out, options)


def _execute_locked(
    prepared: Prepared, input_path: Path, out: Path, options: RunOptions
) -> RunResult:
    job = prepared.job
    if options.plan is not None:
        _check_plan(prepared, options.plan)
    ledger = Ledger(job.state_dir)
    run_id = _new_run_id()
    try:
        started = now_iso()
        ledger.start_run(
            {
                "run_id": run_id,
                "started_at": started,
                "dry_run": int(options.dry_run),
                "operation": job.operation,
                "base_url": job.base_url,
                "job_path": str(job.path) if job.path else None,
                "input_path": str(input_path),
                "input_sha256": prepared.table.sha256,
                "operator": _operator(),
                "tool_version": __version__,
            }
        )
        log.info(
            "run.started", run_id=run_id, dry_run=options.dry_run, state_dir=str(job.state_dir)
        )
        request_outcomes, signum, events = _send_or_show(prepared, ledger, run_id, options)
        outcomes = results.row_outcomes(
            prepared.validated, prepared.plan.rows, prepared.plan.requests, request_outcomes
        )
        if options.communities is not None:
            outcomes = _skip_unselected(outcomes, options.communities)
        if options.plan is not None:
            outcomes = _skip_unplanned(outcomes, options.plan)
        results.write_results(prepared.table, outcomes, out)
        counts = _counts(outcomes)
        judged = (
            outcomes.filter(pl.col("error") != NOT_SELECTED) if options.communities else outcomes
        )
        exit_code = 128 + signum if signum else (0 if results.all_succeeded(judged) else 1)
        manifest = {
            "run_id": run_id,
            "tool_version": __version__,
            "dry_run": options.dry_run,
            "job_file": str(job.path) if job.path else None,
            "operation": job.operation,
            "base_url": job.base_url,
            # Headers every request carries besides the credentials (e.g. Capillary's
            # SKIP-DOWNSTREAM): part of "what was sent", for auditors.
            "extra_headers": prepared.operation.extra_headers(job.options),
            "input": {"path": str(input_path), "sha256": prepared.table.sha256},
            "results": str(out),
            "communities_selected": sorted(options.communities) if options.communities else None,
            "started_at": started,
            "ended_at": now_iso(),
            "operator": _operator(),
            "interrupted_by": signal.Signals(signum).name if signum else None,
            "exit_code": exit_code,
            "counts": counts,
            **_plan_fields(prepared, input_path, options, run_id, started, outcomes),
        }
        with approval.store(job.state_dir) as audit:
            audit.record_manifest(manifest)
        _write_json_atomic(manifest, sibling(out, "manifest.json"))
        report.write_report(sibling(out, "report.html"), manifest, outcomes, events)
        ledger.end_run(run_id, counts=counts, exit_code=exit_code, results_path=str(out))
        return RunResult(outcomes, manifest)
    finally:
        ledger.close()


def _rebuilt_rows(prepared: Prepared) -> pl.DataFrame:
    """Per input row, the request the file and job make now (null for an invalid row)."""
    requests = prepared.plan.rows.join(
        prepared.plan.requests.select(REQUEST_ID, "request"), on=REQUEST_ID, how="left"
    )
    return (
        prepared.validated.select(pl.col(ROW).cast(pl.Int64).alias("row"), ROW)
        .join(requests, on=ROW, how="left")
        .select("row", "request")
    )


def _check_plan(prepared: Prepared, approved: approval.ApprovedPlan) -> None:
    """Nothing is sent unless the file and the job make exactly the approved requests."""
    found = approval.differences(
        approved, prepared.table.sha256, prepared.job, _rebuilt_rows(prepared)
    )
    if found:
        raise approval.ApprovalError(
            f"the file or the job differ from approved plan {approved.plan.run_id}; nothing was "
            "sent: " + "; ".join(found) + ". Fix: restore them, or dry-run again and ask for a "
            "new approval"
        )


def _plan_fields(
    prepared: Prepared,
    input_path: Path,
    options: RunOptions,
    run_id: str,
    started: str,
    outcomes: pl.DataFrame,
) -> dict[str, Any]:
    """A dry run records its plan (manifest: its hash and maker); a run of an approved plan
    names the plan, its hash, its maker and its approver."""
    if options.plan is not None:
        return {
            "plan_run_id": options.plan.plan.run_id,
            "plan_sha256": options.plan.plan.plan_sha256,
            "maker": options.plan.plan.maker,
            "approver": options.plan.approver,
        }
    if not options.dry_run:
        return {}
    settings = approval.job_settings(prepared.job)
    header = {
        "run_id": run_id,
        "maker": approval.acting_user(options.environ or os.environ),
        "created_at": started,
        "input_name": input_path.name,
        "input_path": str(input_path.resolve()),
        "input_sha256": prepared.table.sha256,
        "job_fingerprint": approval.fingerprint_of(settings),
        "job_settings": settings,
        "tool_version": __version__,
    }
    with approval.store(prepared.job.state_dir) as audit:
        digest = audit.record_plan(header, approval.plan_rows(outcomes))
    return {"plan_sha256": digest, "maker": header["maker"]}


def _skip_unplanned(outcomes: pl.DataFrame, approved: approval.ApprovedPlan) -> pl.DataFrame:
    """Rows the approved plan did not send (already applied, invalid...) are not sent now."""
    planned = approved.rows.select(pl.col("row").alias(ROW), pl.col("status").alias("__planned"))
    joined = outcomes.join(planned, on=ROW, how="left", maintain_order="left")
    unsent = pl.col("status").is_null()
    return joined.with_columns(
        pl.when(unsent)
        .then(pl.lit(Status.SKIPPED.value))
        .otherwise(pl.col("status"))
        .alias("status"),
        pl.when(unsent)
        .then(pl.format("not sent: the approved plan had this row as {}", pl.col("__planned")))
        .otherwise(pl.col("error"))
        .alias("error"),
        pl.when(unsent).then(0).otherwise(pl.col("attempts")).alias("attempts"),
    ).drop("__planned")


def _skip_unselected(outcomes: pl.DataFrame, selected: frozenset[str]) -> pl.DataFrame:
    """Rows of communities not selected: skipped, whatever they were (not this run's business)."""
    unselected = ~pl.col("community").is_in(sorted(selected)).fill_null(False)
    return outcomes.with_columns(
        pl.when(unselected)
        .then(pl.lit(Status.SKIPPED.value))
        .otherwise(pl.col("status"))
        .alias("status"),
        pl.when(unselected)
        .then(pl.lit(None, pl.Int64))
        .otherwise(pl.col("http_status"))
        .alias("http_status"),
        pl.when(unselected).then(pl.lit(NOT_SELECTED)).otherwise(pl.col("error")).alias("error"),
        pl.when(unselected).then(0).otherwise(pl.col("attempts")).alias("attempts"),
    )


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
    if known is not None:
        requests = requests.join(known, on=["community", "method", "path"], how="semi")
    if requests.is_empty():
        return would_apply  # the common audit case: no hashing at all
    decided = _decided_outcomes(
        triage(with_fingerprints(prepared, requests), ledger, prepared.job, force=False)
    )
    rest = would_apply.join(decided.select("__request"), on="__request", how="anti")
    return pl.concat([decided, rest])


def _send_or_show(
    prepared: Prepared, ledger: Ledger, run_id: str, options: RunOptions
) -> tuple[pl.DataFrame, int | None, list[SendEvent]]:
    """Per request: its outcome (dry run: what would happen), the signal that stopped us, and
    the HTTP exchanges for the report."""
    requests = prepared.plan.requests
    if options.communities is not None:
        requests = requests.filter(pl.col("community").is_in(sorted(options.communities)))
    if options.plan is not None:
        # Never a request outside the plan: only those of rows it would have applied.
        approved_rows = options.plan.rows.filter(pl.col("status") == Status.WOULD_APPLY.value)
        allowed = prepared.plan.rows.join(
            approved_rows.select(pl.col("row").alias(ROW)), on=ROW, how="semi"
        )
        requests = requests.join(allowed.select(REQUEST_ID).unique(), on=REQUEST_ID, how="semi")
    if options.dry_run:
        return _would_happen(prepared, requests, ledger, force=options.force), None, []
    triaged = triage(
        with_fingerprints(prepared, requests), ledger, prepared.job, force=options.force
    )
    decided = _decided_outcomes(triaged)
    to_send = planned(triaged)
    communities = sorted({r.community for r in to_send})
    credentials = resolve_credentials(
        prepared.operation, prepared.job, communities, options.environ, options.given_credentials
    )
    sent, signum, events = anyio.run(
        functools.partial(
            _dispatch,
            prepared,
            to_send,
            credentials,
            recorder=LedgerRecorder(ledger, run_id),
            force=options.force,
            quiet=options.quiet,
            handle_signals=options.handle_signals,
            on_progress=options.on_progress,
            cancel=options.cancel,
        ),
        backend_options=EVENT_LOOP,
    )
    return pl.concat([decided, outcomes_frame(sent)]), signum, events
