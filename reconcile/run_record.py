"""A run's record: started in the ledger, ended with its counts, exit code, the dry run's plan,
the manifest (in the audit chain and beside the results) and the report."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import structlog

from reconcile import (
    approval,
    atomic,
    exit_codes,
    liveness,
    locks,
    report,
    results,
    signals,
)
from reconcile.dispatch import SendEvent
from reconcile.job import Job
from reconcile.ledger import INTERRUPTED_CAUSE, Ledger, now_iso
from reconcile.operations import Operation, get_operation
from reconcile.plan_store import PlanRows
from reconcile.results import sibling
from reconcile.run_types import Counts, Manifest, PlanFields
from reconcile.version import __version__

if TYPE_CHECKING:
    from reconcile.run_types import RunOptions

log = structlog.get_logger("reconcile")


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def counts_of(outcomes: pl.DataFrame) -> Counts:
    per_status = dict(outcomes.group_by("status").len().sort("status").iter_rows())
    per_community: dict[str, dict[str, int]] = {}
    for community, status, rows in results.summary(outcomes).iter_rows():
        per_community.setdefault(community, {})[status] = rows
    return {"rows": outcomes.height, "per_status": per_status, "per_community": per_community}


def write_json_atomic(value: Manifest, path: Path) -> None:
    atomic.write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


@dataclasses.dataclass(slots=True)
class Ending:
    """How far the run's end got: what :func:`stopped` must correct if it fails midway."""

    manifest: Manifest | None = None
    """The manifest the run is ending with (counts and exit code known)."""
    report: Path | None = None
    chained: bool = False
    ended: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One run as recorded in the ledger: what it reads and writes, and its id."""

    job: Job
    operation: Operation
    input_path: Path
    input_sha256: str
    out: Path
    options: RunOptions
    ledger: Ledger
    run_id: str
    started: str
    ending: Ending = dataclasses.field(default_factory=Ending)


@contextlib.contextmanager
def recorded_run(
    job: Job, input_path: Path, input_sha256: str, out: Path, options: RunOptions
) -> Iterator[Run]:
    """Start the run's record in the ledger (holding its liveness lock until it ends); its end
    recorded by :func:`finish`, or by :func:`stopped` when anything stops it before."""
    ledger = Ledger(job.storage)
    for gone in ledger.interrupted:
        log.warning("run.marked_interrupted", run_id=gone, cause=INTERRUPTED_CAUSE)
    try:
        run = Run(
            job,
            get_operation(job.operation),
            input_path,
            input_sha256,
            out,
            options,
            ledger,
            new_run_id(),
            now_iso(),
        )
        with liveness.holding(job.storage, run.run_id):
            _start(run)
            try:
                yield run
            except BaseException as exc:
                if not run.ending.ended:
                    stopped(run, exc)
                raise
    finally:
        ledger.close()


def _start(run: Run) -> None:
    job, options = run.job, run.options
    run.ledger.start_run(
        {
            "run_id": run.run_id,
            "started_at": run.started,
            "dry_run": int(options.dry_run),
            "operation": job.operation,
            "base_url": job.base_url,
            "job_path": str(job.path) if job.path else None,
            "input_path": str(run.input_path),
            "input_sha256": run.input_sha256,
            "operator": operator(),
            "tool_version": __version__,
        }
    )
    if not options.dry_run:
        locks.note_run(run.run_id)  # a run refused by this one's lock names it
    log.info(
        "run.started", run_id=run.run_id, dry_run=options.dry_run, state_dir=str(job.state_dir)
    )


def plan_fields(run: Run, rows: Callable[[], pl.DataFrame | PlanRows]) -> PlanFields:
    """The manifest's plan fields; a dry run records its plan (``rows()``) in the audit store."""
    return approval.plan_fields(
        run.job, run.input_sha256, run.input_path, run.options, run.run_id, run.started, rows
    )


def finish(
    run: Run,
    outcomes: pl.DataFrame,
    signum: int | None,
    events: list[SendEvent],
    plan: PlanFields,
) -> Manifest:
    """Counts, exit code, the manifest (with ``plan``: :func:`plan_fields`) and report; the
    run's end. Returns the manifest."""
    options = run.options
    counts = counts_of(outcomes)
    judged = (
        outcomes.filter(pl.col("community").is_in(sorted(options.communities)).fill_null(False))
        if options.communities is not None
        else outcomes
    )
    exit_code = 128 + signum if signum else (0 if results.all_succeeded(judged) else 1)
    manifest: Manifest = {
        **manifest_of(run),
        "interrupted_by": signal.Signals(signum).name if signum else None,
        "exit_code": exit_code,
        "counts": counts,
        **plan,
    }
    # Each step noted in run.ending: when one fails (a full disk), stopped() records exit 3
    # wherever this run's record already went, and removes the files that say otherwise.
    run.ending.manifest = manifest
    run.ending.report = sibling(run.out, "report.html")
    report.write_report(run.ending.report, manifest, outcomes, events)
    with approval.store(run.job.storage) as audit:
        head = audit.record_manifest(manifest)
    run.ending.chained = True
    # The chain's head after this run (covering this manifest), to copy outside the database.
    manifest = {**manifest, "audit_head": head}
    write_json_atomic(manifest, sibling(run.out, "manifest.json"))
    run.ledger.end_run(run.run_id, counts=counts, exit_code=exit_code, results_path=str(run.out))
    run.ending.ended = True
    return manifest


def stopped(run: Run, exc: BaseException) -> None:
    """The run stopped on ``exc`` (a full disk, a signal, a bug) before its end was recorded:
    its manifest (chain and file) and its ledger record say so with the process's exit code, as
    far as the disk lets each step; a report already written (with another exit code) is
    removed. An unusable input or job (exit 2) only ends the ledger record: nothing was sent."""
    code = exit_codes.for_exception(exc)
    interrupted = signals.signal_of(exc)
    cause = signals.leaf(exc)
    error = f"{type(cause).__name__}: {cause}" if interrupted is None else None
    if code == exit_codes.UNUSABLE and not run.ending.chained:
        counts: Counts = {"ended": "unusable", "error": error}
        _best_effort("ledger", lambda: _end(run, counts, code))
        return
    requests = _recorded_states(run)
    base: Manifest = run.ending.manifest or {
        **manifest_of(run),
        "counts": {"ended": "interrupted" if interrupted else "crashed", "requests": requests},
        **(plan_fields(run, pl.DataFrame) if run.options.plan is not None else PlanFields()),
    }
    manifest: Manifest = {
        **base,
        "ended_at": now_iso(),
        "interrupted_by": interrupted.name if interrupted else base.get("interrupted_by"),
        "exit_code": code,
        "error": error,
    }
    if run.ending.report is not None:
        run.ending.report.unlink(missing_ok=True)  # it shows another exit code
    head: list[str] = []

    def chain() -> None:
        with approval.store(run.job.storage) as audit:
            head.append(audit.record_manifest(manifest))

    _best_effort("audit chain", chain)
    path = sibling(run.out, "manifest.json")
    if not _best_effort("manifest", lambda: write_json_atomic(_headed(manifest, head), path)):
        path.unlink(missing_ok=True)  # never an earlier run's manifest beside this run's files
    _best_effort("ledger", lambda: _end(run, manifest["counts"], code))


def _headed(manifest: Manifest, head: list[str]) -> Manifest:
    return {**manifest, "audit_head": head[0]} if head else manifest


def _end(run: Run, counts: Counts, code: int) -> None:
    run.ledger.end_run(run.run_id, counts=counts, exit_code=code, results_path=str(run.out))


def _recorded_states(run: Run) -> dict[str, int]:
    """This run's requests per ledger state (applied, in_flight...), as far as it can be read."""
    found: list[dict[str, int]] = []
    _best_effort("ledger", lambda: found.append(run.ledger.states(run.run_id)))
    return found[0] if found else {}


def _best_effort(what: str, step: Callable[[], None]) -> bool:
    """One step of recording a stopped run; a failure (the same full disk) is logged, not
    raised: the error that stopped the run is the one to report."""
    try:
        step()
    except Exception as exc:  # any failure here must not hide the first one
        log.warning("run.record_incomplete", part=what, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def manifest_of(run: Run) -> Manifest:
    """What a run was: its id, the tool, the job and input, the times and who ran it."""
    job, options = run.job, run.options
    return {
        "run_id": run.run_id,
        "tool_version": __version__,
        "dry_run": options.dry_run,
        "job_file": str(job.path) if job.path else None,
        "operation": job.operation,
        "base_url": job.base_url,
        # Headers every request carries besides the credentials (e.g. Capillary's
        # SKIP-DOWNSTREAM): part of "what was sent", for auditors.
        "extra_headers": run.operation.extra_headers(job.options),
        "input": {"path": str(run.input_path), "sha256": run.input_sha256},
        "results": str(run.out),
        "communities_selected": sorted(options.communities) if options.communities else None,
        "started_at": run.started,
        "ended_at": now_iso(),
        "operator": operator(),
    }
