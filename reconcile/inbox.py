"""Cron jobs: the job file names its input (a file, a glob or an inbox folder); every new file
is run in name order, its results named after it and the run time, and it moves to the archive
once its run finished. A file still being written is left for next time. With
``require_approval`` a new file is planned (dry run) and kept, and applied on the first pass after
its plan's approval."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import glob
import hashlib
import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from reconcile import approval, exit_codes, notify, pipeline, preflight, queueing
from reconcile.exceptions import ConfigError, InputError, PlanStateError
from reconcile.job import Job
from reconcile.run_types import RunOptions, RunResult
from reconcile.table import INPUT_SUFFIXES

#: Shows one input's end to the operator: its run, or why the file could not be used.
Show = Callable[[Path, RunResult | InputError, Path], None]

log = structlog.get_logger("reconcile.inbox")


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
    _check_folder(job, pattern)
    if target.is_dir():
        candidates = [
            p for p in target.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
        ]
    elif glob.has_magic(pattern):
        candidates = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    else:
        candidates = [target] if target.is_file() else []
    candidates = [p for p in candidates if not p.name.startswith(".")]  # editors' temp files
    moment = time.time() if now is None else now
    ready = []
    for path in sorted(candidates, key=lambda p: p.name):
        age = moment - path.stat().st_mtime
        if age < job.settle_seconds:
            log.info("inbox.still_being_written", path=str(path), age_seconds=round(age, 1))
            continue
        ready.append(path)
    if not candidates:
        log.info("inbox.empty", input=job.input)
    elif not ready:
        # Not an empty night: files came and are not finished. Tomorrow's run takes them, but
        # someone should know if this repeats (an uploader that never closes its file).
        log.warning(
            "inbox.not_ready",
            input=job.input,
            files=len(candidates),
            settle_seconds=job.settle_seconds,
        )
    return ready


def _check_folder(job: Job, pattern: str) -> None:
    """The folder the job's input lives in must exist: a missing inbox (a typo, an unmounted
    share) is a broken job, never a quiet empty night; and results_dir must be writable."""
    folder = Path(pattern)
    if glob.has_magic(pattern):  # the part before the first wildcard: inbox/*.csv -> inbox
        fixed = itertools.takewhile(lambda part: not glob.has_magic(part), folder.parts)
        folder = Path(*fixed)
    elif not ((job.input or "").endswith(("/", "\\")) or folder.is_dir()):
        folder = folder.parent  # a single file that has not come yet: its folder must exist
    problems = []
    if not folder.is_dir():
        where = f"{job.path}: " if job.path else ""
        problems.append(
            f"{where}input = {job.input!r}: the folder {folder} does not exist. Fix: create it, "
            "mount it, or correct input in the job file."
        )
    if job.results_dir is not None:  # pre-flight: where every file's results go
        problems.append(preflight.check_folder(job.results_dir, "results_dir") or "")
    if any(problems):
        raise preflight.PreflightError([p for p in problems if p])


def results_path(job: Job, source: Path, started: dt.datetime, *, dry_run: bool = False) -> Path:
    """``<results_dir>/<input name>.<UTC run time>.results.csv`` (or .xlsx; a dry run's
    ``....dry-run.results.csv``, so it is never taken for what was sent); ``-2``, ``-3``…
    after the time when that name is taken (``corrections.csv`` and ``corrections.xlsx`` run
    in the same second)."""
    folder = job.results_dir or source.parent
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    kind = ".dry-run" if dry_run else ""
    path = folder / f"{source.stem}.{stamp}{kind}.results.{job.results_format}"
    taken = 1
    while path.exists():
        taken += 1
        path = folder / f"{source.stem}.{stamp}-{taken}{kind}.results.{job.results_format}"
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
    try:
        shutil.move(str(source), destination)  # a copy when the archive is on another disk
    except OSError:
        if source.exists():
            destination.unlink(missing_ok=True)  # never half a copy beside the original
        raise
    log.info("inbox.archived", path=str(source), archive=str(destination))
    return destination


def run_with_approval(job: Job, options: RunOptions, sources: list[Path], show: Show) -> int:
    """With require_approval, each inbox file goes: new -> dry run, its plan recorded, the file
    kept; planned and waiting (or rejected) -> kept; approved -> applied and archived."""
    codes = [exit_codes.OK]
    fingerprint = approval.fingerprint_of(approval.job_settings(job))
    for source in sources:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        with approval.store(job.storage) as audit:
            plan = audit.latest_plan_for(digest, fingerprint)
        if plan is not None and plan.decision is None:
            log.info("inbox.awaiting_approval", input=str(source), plan=plan.run_id)
            continue
        if plan is not None and plan.decision is not None:
            if plan.decision["decision"] == "rejected":
                log.warning("inbox.plan_rejected", input=str(source), plan=plan.run_id)
                codes.append(exit_codes.ROWS_FAILED)
                continue
            try:
                approved = approval.approved_plan(
                    job.storage, plan.run_id, job, dt.datetime.now(dt.UTC)
                )
            except PlanStateError as exc:  # applied once: a new plan, a new approval
                log.warning("inbox.plan_already_applied", input=str(source), error=str(exc))
            except approval.ApprovalError as exc:  # expired: plan the file again
                log.warning("inbox.approval_expired", input=str(source), error=str(exc))
            else:
                planned = dataclasses.replace(options, plan=approved)
                codes.append(run_sources(job, planned, [source], show))
                continue
        rehearsal = dataclasses.replace(options, dry_run=True)
        codes.append(run_sources(job, rehearsal, [source], show))
        log.info("inbox.awaiting_approval", input=str(source))
    return max(codes)


def run_sources(
    job: Job, options: RunOptions, sources: list[Path], show: Show, *, rehearsal: bool = False
) -> int:
    """Run each inbox file in turn, each archived when done; the worst exit code. An unusable
    file is skipped (it stays in the inbox); an interrupted run stops the pass (its file
    stays); ``rehearsal`` (a sandbox run) never archives, like a dry run."""
    if not sources:
        return exit_codes.OK  # pending_inputs logged whether the inbox was empty or not ready
    codes = []
    for source in sources:
        target = results_path(job, source, dt.datetime.now(dt.UTC), dry_run=options.dry_run)
        try:
            result = pipeline.execute(source, job, target, options)
        except InputError as exc:
            # One unusable file must not stop the others; it stays in the inbox to be fixed.
            log.error("run.unusable", input=str(source), error=str(exc))
            show(source, exc, target)
            codes.append(exit_codes.UNUSABLE)
            continue
        show(source, result, target)
        if job.notify_url:
            notify.notify(job.notify_url, result.manifest)
        code = result.exit_code
        codes.append(code)
        if code > exit_codes.UNUSABLE:
            return code  # interrupted: stop here; this file stays in the inbox for the next run
        if options.dry_run or rehearsal:
            # A rehearsal (dry run, or against the sandbox) must not use up tonight's files.
            log.info("inbox.kept", input=str(source), reason="dry run or sandbox rehearsal")
        elif result.left_other_communities:
            # --community left other communities' rows unsent: archiving the file would
            # lose them. It stays; a later run sends them (the applied ones are not re-sent).
            log.warning("inbox.kept", input=str(source), reason="rows of communities not selected")
        else:
            _archive_or_keep(job, source)
    return max(codes)


def _archive_or_keep(job: Job, source: Path) -> None:
    """Archive a finished file; when that fails (an archive on a full disk) the file stays in
    the inbox and the run's exit code stays the one its manifest holds: the next pass finds
    every row already applied, and sends nothing."""
    try:
        archive(job, source)
    except OSError as exc:
        log.error("inbox.not_archived", input=str(source), error=f"{exc.strerror}: {exc}")


def run_inbox(job: Job, options: RunOptions, show: Show, *, rehearsal: bool = False) -> int:
    """One pass over the job's inbox (``input`` = a folder, a glob or a file): every ready
    file in turn, each archived when done. A real pass holds the job's lock from before the
    inbox is listed, so a second cron run started meanwhile exits 2 instead of taking the files
    this one has not reached yet; with ``require_approval`` only approved plans are applied."""
    pending = functools.partial(run_sources, rehearsal=rehearsal)
    if options.dry_run:
        return pending(job, options, pending_inputs(job), show)
    with queueing.run_lock(job, options):  # with --wait: queued until the lock frees
        held = dataclasses.replace(options, lock_held=True)
        if job.require_approval and not rehearsal:
            return run_with_approval(job, held, pending_inputs(job), show)
        return pending(job, held, pending_inputs(job), show)
