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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import structlog

from reconcile import __version__, approval, locks, report, results
from reconcile.audit import PlanRows
from reconcile.dispatch import SendEvent
from reconcile.job import Job
from reconcile.ledger import Ledger, now_iso
from reconcile.operations import Operation, get_operation
from reconcile.results import sibling

if TYPE_CHECKING:
    from reconcile.pipeline import RunOptions

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


def counts_of(outcomes: pl.DataFrame) -> dict[str, Any]:
    per_status = dict(outcomes.group_by("status").len().sort("status").iter_rows())
    per_community: dict[str, dict[str, int]] = {}
    for community, status, rows in results.summary(outcomes).iter_rows():
        per_community.setdefault(community, {})[status] = rows
    return {"rows": outcomes.height, "per_status": per_status, "per_community": per_community}


def write_json_atomic(value: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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


@contextlib.contextmanager
def recorded_run(
    job: Job, input_path: Path, input_sha256: str, out: Path, options: RunOptions
) -> Iterator[Run]:
    """Start the run's record in the ledger; the ledger is closed when the run ends."""
    ledger = Ledger(job.storage)
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
        ledger.start_run(
            {
                "run_id": run.run_id,
                "started_at": run.started,
                "dry_run": int(options.dry_run),
                "operation": job.operation,
                "base_url": job.base_url,
                "job_path": str(job.path) if job.path else None,
                "input_path": str(input_path),
                "input_sha256": input_sha256,
                "operator": operator(),
                "tool_version": __version__,
            }
        )
        if not options.dry_run:
            locks.note_run(run.run_id)  # a run refused by this one's lock names it
        log.info(
            "run.started",
            run_id=run.run_id,
            dry_run=options.dry_run,
            state_dir=str(job.state_dir),
        )
        yield run
    finally:
        ledger.close()


def plan_fields(run: Run, rows: Callable[[], pl.DataFrame | PlanRows]) -> dict[str, Any]:
    """The manifest's plan fields; a dry run records its plan (``rows()``) in the audit store."""
    return approval.plan_fields(
        run.job, run.input_sha256, run.input_path, run.options, run.run_id, run.started, rows
    )


def finish(
    run: Run,
    outcomes: pl.DataFrame,
    signum: int | None,
    events: list[SendEvent],
    plan: Mapping[str, Any],
) -> dict[str, Any]:
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
    manifest = {
        **manifest_of(run),
        "interrupted_by": signal.Signals(signum).name if signum else None,
        "exit_code": exit_code,
        "counts": counts,
        **plan,
    }
    with approval.store(run.job.storage) as audit:
        head = audit.record_manifest(manifest)
    # The chain's head after this run (covering this manifest), to copy outside the database.
    manifest = {**manifest, "audit_head": head}
    write_json_atomic(manifest, sibling(run.out, "manifest.json"))
    report.write_report(sibling(run.out, "report.html"), manifest, outcomes, events)
    run.ledger.end_run(run.run_id, counts=counts, exit_code=exit_code, results_path=str(run.out))
    return manifest


def manifest_of(run: Run) -> dict[str, Any]:
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
