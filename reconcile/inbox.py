"""Cron jobs: the job file names its input (a file, a glob or an inbox folder); every new file
is run in name order, its results named after it and the run time, and it moves to the archive
once its run finished. A file still being written is left for next time."""

from __future__ import annotations

import datetime as dt
import glob
import shutil
import time
from pathlib import Path

import structlog

from reconcile.exceptions import ConfigError
from reconcile.intake import SPREADSHEET_SUFFIXES
from reconcile.job import Job

log = structlog.get_logger("reconcile.inbox")
INPUT_SUFFIXES = (".csv", ".txt", *SPREADSHEET_SUFFIXES)


def pending_inputs(job: Job, *, now: float | None = None) -> list[Path]:
    """The job's input files ready to run, in name order."""
    if not job.input:
        raise ConfigError(
            f"{job.path or 'job'}: no INPUT on the command line and no input = ... in the job file. "
            'Fix: pass a file, or add input = "inbox/" (a file, a glob or a folder).'
        )
    base = job.path.parent if job.path else Path()
    pattern = str(base / Path(job.input).expanduser())
    target = Path(pattern)
    if target.is_dir():
        candidates = [
            p for p in target.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
        ]
    elif glob.has_magic(pattern):
        candidates = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    else:
        candidates = [target] if target.is_file() else []
    moment = time.time() if now is None else now
    ready = []
    for path in sorted(candidates, key=lambda p: p.name):
        if path.name.startswith("."):
            continue  # editors' and uploaders' temporary files
        age = moment - path.stat().st_mtime
        if age < job.settle_seconds:
            log.info("inbox.still_being_written", path=str(path), age_seconds=round(age, 1))
            continue
        ready.append(path)
    return ready


def results_path(job: Job, source: Path, started: dt.datetime) -> Path:
    """``<results_dir>/<input name>.<UTC run time>.results.csv`` (or .xlsx); ``-2``, ``-3``…
    after the time when that name is taken (``corrections.csv`` and ``corrections.xlsx`` run
    in the same second)."""
    folder = job.results_dir or source.parent
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{source.stem}.{stamp}.results.{job.results_format}"
    taken = 1
    while path.exists():
        taken += 1
        path = folder / f"{source.stem}.{stamp}-{taken}.results.{job.results_format}"
    return path


def archive(job: Job, source: Path) -> Path | None:
    """Move a finished input to the archive (never overwriting an earlier file of that name)."""
    if job.archive_dir is None:
        return None
    job.archive_dir.mkdir(parents=True, exist_ok=True)
    destination = job.archive_dir / source.name
    if destination.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        destination = job.archive_dir / f"{source.stem}.{stamp}{source.suffix}"
    shutil.move(str(source), destination)
    log.info("inbox.archived", path=str(source), archive=str(destination))
    return destination
