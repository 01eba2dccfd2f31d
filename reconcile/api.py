"""The Python API: what the CLI, the inbox pass and any server call.

    import reconcile

    job = reconcile.load_job("jobs/purchase-history.example.toml")
    checked = reconcile.validate_file("sample_data/purchase-history-mistakes.csv", job)
    summary = reconcile.run("sample_data/purchase-history.csv", job, "out/ph.csv", dry_run=True)

Every function raises ``reconcile.exceptions.InputError`` / ``ConfigError`` (nothing sent) for an
unusable file or job, exactly as the CLI exits 2 for them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconcile import job as _job
from reconcile import logs, run_types
from reconcile.columns import ERROR, REQUEST_ID, ROW
from reconcile.credentials import resolve_credentials
from reconcile.lazy import lazy

if TYPE_CHECKING:
    import polars as pl

    from reconcile import pipeline
    from reconcile.outcome import OnProgress
    from reconcile.plan_store import ApprovedPlan
    from reconcile.run_types import Manifest, Wait
    from reconcile.verification import Verification
else:
    pl = lazy("polars")
    pipeline = lazy("reconcile.pipeline")


def _default_logging() -> None:
    """An embedding program that configured structlog keeps its set-up; otherwise events go to
    stderr, warnings only (structlog's own default prints everything to stdout)."""
    import structlog

    if not structlog.is_configured():
        logs.configure(quiet=True)


def load_job(path: str | Path, **overrides: Any) -> _job.Job:
    """A job file, checked; ``overrides`` as the command line's (``base_url=``,
    ``state_dir=``, ``rate_per_second=``, ``concurrency=``)."""
    return _job.load_job(Path(path)).with_overrides(**overrides)


@dataclasses.dataclass(frozen=True, slots=True)
class Validation:
    """A file checked against the job's operation: nothing sent, nothing recorded."""

    rows: int
    valid: int
    invalid: int
    errors: pl.DataFrame
    """``row`` (as the spreadsheet numbers it) and ``error`` (every problem in plain words)."""
    requests: pl.DataFrame
    """The planned requests: ``community``, ``target``, ``method``, ``path``, ``body``,
    ``request`` (the text the results file shows)."""
    sheet: str | None = None
    """The workbook sheet read (the first with a header row unless ``sheet`` was given)."""
    header_row: int = 1
    """The row the headers were found in (title rows above it are ignored)."""
    notes: Sequence[str] = ()
    """What the reader decided for the analyst to know: the header row or sheet used when not
    the first, total rows not sent."""


def validate_file(path: str | Path, job: _job.Job, *, sheet: str | None = None) -> Validation:
    """Read and check a CSV or xlsx file and plan its requests, without the ledger."""
    _default_logging()
    prepared = pipeline.prepare(Path(path), job, sheet=sheet)
    validated = prepared.validated
    errors = validated.filter(pl.col(ERROR).is_not_null()).select(
        pl.col(ROW).alias("row"), pl.col(ERROR).alias("error")
    )
    return Validation(
        rows=validated.height,
        valid=validated.height - errors.height,
        invalid=errors.height,
        errors=errors,
        requests=prepared.plan.requests.drop(REQUEST_ID, "repeatable"),
        sheet=prepared.table.sheet,
        header_row=prepared.table.header_row,
        notes=tuple(prepared.table.notes),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did: its id, exit code (as the CLI's), counts and files."""

    run_id: str
    exit_code: int
    counts: Mapping[str, int]
    """Rows per status."""
    results: Path
    manifest: Manifest
    outcomes: pl.DataFrame
    """One line per input row: ``__row``, community, status, http_status, error, attempts,
    request. A large file's dry run (:mod:`reconcile.buckets`) leaves ``request`` out: the
    results file and the recorded plan hold every request."""


def run(
    path: str | Path,
    job: _job.Job,
    out: str | Path,
    *,
    dry_run: bool = False,
    force: bool = False,
    communities: Collection[str] | None = None,
    sheet: str | None = None,
    plan: ApprovedPlan | None = None,
    submit: bool = True,
    environ: Mapping[str, str] | None = None,
    on_progress: OnProgress | None = None,
    cancel: threading.Event | None = None,
    wait: Wait | None = None,
) -> RunSummary:
    """Validate, consult the ledger, send (unless ``dry_run``), record and write the results.

    ``on_progress(community, status)`` is called as each request ends; setting ``cancel`` (from
    any thread) stops the run as Ctrl-C does (exit code 130): no new requests, in-flight ones
    finish within the job's grace period, every outcome recorded. Signals are handled only when
    called from the main thread. Credentials come from ``environ`` (default: the process's).
    With ``wait`` (:class:`reconcile.run_types.Wait`) a run whose lock another run holds is
    queued until it frees (RunLockedError when the wait ends first, nothing sent).
    """
    import os

    _default_logging()
    options = run_types.RunOptions(
        dry_run=dry_run,
        force=force,
        quiet=True,
        communities=frozenset(communities) if communities is not None else None,
        sheet=sheet,
        environ=os.environ if environ is None else environ,
        handle_signals=threading.current_thread() is threading.main_thread(),
        plan=plan,
        submit=submit,
        on_progress=on_progress,
        cancel=cancel,
        wait=wait,
    )
    result = pipeline.execute(Path(path), job, Path(out), options)
    manifest = result.manifest
    return RunSummary(
        run_id=str(manifest["run_id"]),
        exit_code=result.exit_code,
        counts=dict(manifest["counts"]["per_status"]),
        results=Path(out),
        manifest=manifest,
        outcomes=result.outcomes,
    )


def verify(
    path: str | Path,
    job: _job.Job,
    *,
    rows: Collection[int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Verification:
    """Read back a file's rows (``rows``: their row numbers; default all valid rows) and compare
    with what they say; returns a :class:`reconcile.verification.Verification` (``verdicts`` per row,
    ``reads``, ``exit_code``). Only GETs are sent; nothing is written."""
    import os

    from reconcile.verification import verify_prepared

    _default_logging()
    prepared = pipeline.prepare(Path(path), job)
    communities = sorted(set(prepared.plan.requests.get_column("community").to_list()))
    credentials = resolve_credentials(
        prepared.operation, job, communities, os.environ if environ is None else environ
    )
    chosen = None if rows is None else pl.Series(sorted(rows), dtype=pl.Int64)
    return verify_prepared(prepared, credentials, rows=chosen)
