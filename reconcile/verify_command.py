"""``reconcile verify RUN_ID|FILE --job JOB [--out FILE]``: read back an earlier run's rows
(applied, already applied or unknown) or a file's rows (no run at all), and write the input's
columns plus ``verify_status`` and ``verify_detail``. Never writes to the API or the ledger.

Exit codes: 0 every row verified, confirmed or unverifiable; 4 any mismatch or not found; 1 reads
failed; 2 unusable input or job (as ``run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from reconcile import approval, verify_record
from reconcile.columns import REQUEST_ID, ROW
from reconcile.credentials import resolve_credentials
from reconcile.database import Storage, given_ledger_url
from reconcile.echoes import Echoes
from reconcile.exceptions import ConfigError
from reconcile.job import Job, load_job
from reconcile.ledger import FinishedRecord, Ledger, RequestRecord
from reconcile.operations import get_operation
from reconcile.pipeline import prepare
from reconcile.results import write_results
from reconcile.triage import with_fingerprints
from reconcile.verification import Verification, verify_prepared
from reconcile.verify_record import VerificationRecord

if TYPE_CHECKING:
    from reconcile.run_types import Prepared, RunResult

#: Rows of an earlier run that may have changed the API, so are read back.
READ_BACK_STATUSES = ("applied", "already_applied", "unknown")


class AfterRun:
    """``run --verify``: after each input's writes, read back every row applied, already
    applied or unknown, print the counts, add ``verify_status`` and ``verify_detail`` to the
    results file, write ``<results>.verify.csv`` beside it, record the verification in the
    audit chain and the report; ``worst`` is 4 when a read disagrees, 1 when reads failed."""

    def __init__(self, job: Job, environ: Mapping[str, str], sample: float | None = None) -> None:
        self.job, self.environ, self.sample, self.worst = job, environ, sample, 0
        #: The write answers' echoes (Returning.AI), kept as they come back: ``on_answer``.
        self.echoes = Echoes(get_operation(job.operation))

    def __call__(self, source: Path, ended: RunResult | Exception, out: Path) -> None:
        try:
            self._verify(source, ended, out)
        finally:
            self.echoes.clear()  # the next input's request ids start again

    def _verify(self, source: Path, ended: RunResult | Exception, out: Path) -> None:
        if isinstance(ended, Exception) or ended.manifest.get("dry_run"):
            return
        statuses = ended.outcomes.filter(pl.col("status").is_in(READ_BACK_STATUSES))
        if statuses.is_empty():
            return
        prepared = prepare(source, self.job)
        communities = sorted(set(statuses.get_column("community").to_list()))
        credentials = resolve_credentials(prepared.operation, self.job, communities, self.environ)
        rows = statuses.get_column(ROW).cast(pl.Int64)
        unknown = statuses.filter(pl.col("status") == "unknown").get_column(ROW)
        result = verify_prepared(
            prepared,
            credentials,
            rows=rows,
            sample_percent=self.sample,
            always=unknown.to_list(),
            kept=self.echoes.verdict,
        )
        settled = settle_unknowns(prepared, ended.manifest["run_id"], result.verdicts, unknown)
        _with_verdicts(prepared, ended.outcomes, result.verdicts, out)
        _write(
            prepared,
            result,
            out.with_name(f"{out.stem}.verify.csv"),
            run_id=ended.manifest["run_id"],
            source="run --verify",
            environ=self.environ,
            sample_percent=self.sample,
            report_path=out.with_name(f"{out.stem}.report.html"),
        )
        if settled:
            print(f"verify: {settled}")
        self.worst = max(self.worst, result.exit_code)


def _with_verdicts(
    prepared: Prepared, outcomes: pl.DataFrame, verdicts: pl.DataFrame, out: Path
) -> None:
    """The run's results file again, with ``verify_status`` and ``verify_detail`` per row read
    back (empty for rows not read: not sent, or outside ``--verify-sample``)."""
    judged = verdicts.with_columns(pl.col(ROW).cast(outcomes.schema[ROW]))
    joined = outcomes.join(judged, on=ROW, how="left", maintain_order="left")
    write_results(prepared.table, joined, out)


#: What the ledger records for an unknown request once a read has settled it.
SETTLED_APPLIED = "unknown settled by read-back: the API holds the change (applied)"
SETTLED_ABSENT = "not applied, safe to send again: read back after verify_settle_seconds"


def settle_unknowns(
    prepared: Prepared, run_id: str, verdicts: pl.DataFrame, unknown: pl.Series
) -> str:
    """Unknown requests whose every row read verified become applied in the ledger; those whose
    read shows the change absent (after the settle window) become failed, so the next run sends
    them once. Read failures stay unknown. Returns what was settled, in words."""
    rows = prepared.plan.rows.filter(pl.col(ROW).is_in(unknown.cast(pl.Int64).implode()))
    judged = rows.join(verdicts.with_columns(pl.col(ROW).cast(rows.schema[ROW])), on=ROW)
    per_request = judged.group_by(REQUEST_ID).agg(pl.col("verify_status").unique().alias("seen"))
    requests = with_fingerprints(prepared.plan.requests, prepared.job).join(
        per_request, on=REQUEST_ID
    )
    finished = []
    for line in requests.iter_rows(named=True):
        seen = set(line["seen"])
        if seen == {"verified"}:
            state, error = "applied", SETTLED_APPLIED
        elif seen <= {"mismatch", "not_found"}:
            state, error = "failed", SETTLED_ABSENT
        else:
            continue
        record = RequestRecord(
            run_id,
            line["fingerprint"],
            line["community"],
            line["method"],
            line["path"],
            line["target"],
        )
        finished.append(FinishedRecord(record, state, None, error, 0))
    if not finished:
        return ""
    ledger = Ledger(prepared.job.storage)
    try:
        ledger.commit([], finished)
    finally:
        ledger.close()
    applied = sum(f.state == "applied" for f in finished)
    return f"{applied} unknown settled applied, {len(finished) - applied} not applied (safe to send again)"


def main(args: argparse.Namespace) -> int:
    target: str = args.target
    out: Path | None = args.out
    sample: float | None = args.verify_sample
    job = load_job(args.job)
    result, _ = verify_target(job, target, out, sample_percent=sample, environ=os.environ)
    return int(result.exit_code)


def verify_target(
    job: Job,
    target: str | Path,
    out: Path | None,
    *,
    sample_percent: float | None,
    environ: Mapping[str, str],
    source: str = "reconcile verify",
    quiet: bool = False,
) -> tuple[Verification, VerificationRecord]:
    """Read back a run (by id) or a file, write the verify file (default
    ``out/<input>.verify.csv``), record the verification in the audit chain (and the run's
    report), print its lines unless ``quiet`` (the console); returns the
    :class:`~reconcile.verification.Verification` and the record."""
    rows, written_at, run = None, None, None
    if Path(target).is_file():
        path = Path(target)
    else:
        run = _find_run(job, str(target))
        _refuse_dry_run(run)
        path, rows, written_at = _run_rows(run)
    prepared = prepare(path, job)
    if run is not None and prepared.table.sha256 != run.input_sha256:
        raise ConfigError(f"run {run.run_id}: its input file {path} has changed since the run")
    communities = sorted(set(prepared.plan.requests.get_column("community").to_list()))
    credentials = resolve_credentials(prepared.operation, job, communities, environ)
    result = verify_prepared(
        prepared, credentials, rows=rows, written_at=written_at, sample_percent=sample_percent
    )
    results = Path(run.results_path) if run is not None and run.results_path else None
    entry = _write(
        prepared,
        result,
        out or Path("out") / f"{path.stem}.verify.csv",
        run_id=run.run_id if run is not None else "",
        source=source,
        environ=environ,
        sample_percent=sample_percent,
        report_path=results.with_name(f"{results.stem}.report.html") if results else None,
        quiet=quiet,
    )
    return result, entry


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    """What a read-back needs of a run the ledger holds."""

    run_id: str
    dry_run: bool
    job_path: str | None
    input_path: str
    input_sha256: str
    results_path: str | None
    ended_at: str | None


def _find_run(job: Job, run_id: str) -> _Run:
    ledger = Ledger(Storage(job.state_dir, given_ledger_url(None, os.environ) or job.ledger_url))
    try:
        run = ledger.run(run_id)
    finally:
        ledger.close()
    if run is None:
        raise ConfigError(f"{run_id!r} is neither a file nor a single run of this job's ledger")
    return _Run(
        run_id=str(run["run_id"]),
        dry_run=bool(run["dry_run"]),
        job_path=run["job_path"],
        input_path=str(run["input_path"]),
        input_sha256=str(run["input_sha256"]),
        results_path=run["results_path"],
        ended_at=run["ended_at"],
    )


def _refuse_dry_run(run: _Run) -> None:
    """A dry run sent nothing: there is nothing of it to read back (ConfigError, exit 2)."""
    if run.dry_run:
        job = run.job_path or "JOB"
        raise ConfigError(
            f"run {run.run_id} was a dry run: nothing was sent, so there is nothing to read "
            f"back. To see which rows of its file the API already holds: reconcile verify "
            f"{run.input_path} --job {job}"
        )


def _write(
    prepared: Prepared,
    result: Verification,
    out: Path,
    *,
    run_id: str,
    source: str,
    environ: Mapping[str, str],
    sample_percent: float | None,
    report_path: Path | None,
    quiet: bool = False,
) -> VerificationRecord:
    """The verify file, its record in the audit chain (and the run's report), the terminal's
    lines; returns the record."""
    written = verify_record.write_verify_file(prepared, result.verdicts, out)
    if not quiet:
        verify_record.print_written(written, result.reads)
    return verify_record.record(
        prepared.job.storage,
        run_id,
        written,
        result,
        user=approval.acting_user(environ),
        source=source,
        input_path=prepared.table.path,
        input_sha256=prepared.table.sha256,
        sample_percent=sample_percent,
        report_path=report_path,
    )


def _run_rows(run: _Run) -> tuple[Path, pl.Series, float | None]:
    """An earlier run's input file (unchanged since), the rows to read back, when it ended."""
    path = Path(run.input_path)
    if not path.is_file():
        raise ConfigError(f"run {run.run_id}: its input file {path} is gone")
    if run.results_path is None:
        raise ConfigError(f"run {run.run_id} wrote no results file: nothing to read back")
    results = pl.read_csv(run.results_path, infer_schema=False, encoding="utf8-lossy")
    # Our columns are prefixed where the input had a column of that name (results.py).
    row, status = (
        f"reconcile_{c}" if f"reconcile_{c}" in results.columns else c for c in ("row", "status")
    )
    rows = results.filter(pl.col(status).is_in(READ_BACK_STATUSES)).get_column(row).cast(pl.Int64)
    ended = run.ended_at
    return path, rows, dt.datetime.fromisoformat(ended).timestamp() if ended else None
