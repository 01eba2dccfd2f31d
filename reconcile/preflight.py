"""Pre-flight: everything a run will write or need, checked before the first request.

A run that cannot finish must not start: before anything is recorded or sent, the pipeline
(:func:`reconcile.pipeline.execute`, so CLI, inbox, console and API runs alike) checks

- the results file, errors file, report and manifest: their folder exists or can be created, and
  a file can be created there (probed: a temporary file made and removed), and none of them is a
  folder. Large dry runs' scratch folder lives in the same folder;
- the state dir (ledger, locks, WAL): exists or can be created, writable (probed the same way);
- the ledger: the SQLite file opens as a database (a damaged one stops with exit 3 and
  ``reconcile ledger check``: :class:`reconcile.database.LedgerDamaged`), the PostgreSQL one
  answers and has the schema;
- a real run: every credential variable of every community the file's rows name (set, not
  empty). Never a value in the message.

Every problem found goes into one message (exit 2), each naming the path or the variable and
the reason, so one fix-and-retry is enough.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from reconcile.credentials import missing_credentials
from reconcile.database import SQLITE_FILE, LedgerDamaged, check_reachable
from reconcile.exceptions import ConfigError
from reconcile.job import Job
from reconcile.operations import get_operation


class PreflightError(ConfigError):
    """What a run would need or write is not there: nothing was recorded or sent."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "".join(f"\n  - {p}" for p in problems)
        super().__init__(f"cannot start, nothing was sent ({len(problems)} problem(s)):{listed}")


def outputs_of(out: Path) -> dict[str, Path]:
    """The files a run writes beside its results (results.py and run_record.py name them)."""
    return {
        "results file": out,
        "errors file": out.with_name(f"{out.stem}.errors.csv"),
        "report": out.with_name(f"{out.stem}.report.html"),
        "manifest": out.with_name(f"{out.stem}.manifest.json"),
    }


def check(
    job: Job,
    out: Path,
    *,
    send_to: Collection[str] = (),
    environ: Mapping[str, str] | None = None,
    given: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """PreflightError listing every problem; ``send_to``: the communities a real run sends to
    (their credentials are checked); LedgerDamaged for a SQLite ledger that is not a database."""
    problems = places(job, out)
    problems += missing_credentials(
        get_operation(job.operation), job, sorted(send_to), environ or {}, given
    )
    if problems:
        raise PreflightError(problems)


def input_clash(input_path: Path, out: Path) -> list[str]:
    """An output that is the input file itself (``--out`` the input, or an edited errors file
    run with ``--out`` beside it): writing it would destroy the file the analyst fixed."""
    source = input_path.resolve()
    return [
        f"the {what} {path} is the input file: the run would overwrite it. Fix: --out another file"
        for what, path in outputs_of(out).items()
        if path.resolve() == source
    ]


def places(job: Job, out: Path) -> list[str]:
    """The problems of what the run writes (outputs, state dir) and of its ledger."""
    problems = [*_output_problems(out), *_state_problems(job)]
    return problems or list(_ledger_problems(job))


def check_folder(folder: Path, what: str) -> str | None:
    """Why files cannot be written in ``folder`` (created if missing), or None."""
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        return (
            f"{what} {folder}: cannot be used: {blocker} is a file, not a folder. Fix: move "
            "it or choose another path"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".reconcile-preflight-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (
            f"{what} {folder}: cannot be used: cannot be written ({reason}). Fix: a folder "
            "this user can write"
        )
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is not a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def _output_problems(out: Path) -> Iterable[str]:
    outputs = outputs_of(out)
    folder = out.parent if str(out.parent) else Path()
    names = ", ".join(f"{what} {path.name}" for what, path in outputs.items())
    problem = check_folder(folder, f"results folder (for the {names})")
    if problem:
        yield problem
        return
    for what, path in outputs.items():
        if path.is_dir():
            yield f"{what} {path}: is a folder. Fix: remove it or choose another --out"


def _state_problems(job: Job) -> Iterable[str]:
    """The state dir of a SQLite ledger (the ledger, its WAL, the run locks). With a
    PostgreSQL ledger a run writes nothing there (a pod's folder may be read-only)."""
    if job.ledger_url is not None:
        return
    problem = check_folder(job.state_dir, "state_dir")
    if problem:
        yield problem + " (set state_dir in the job file, or --state-dir)"
        return
    ledger = job.state_dir / SQLITE_FILE
    if ledger.exists() and not ledger.is_file():
        yield f"ledger {ledger}: is not a file. Fix: move it away"


def _ledger_problems(job: Job) -> Iterable[str]:
    if job.ledger_url is not None:
        try:
            check_reachable(job.ledger_url)
        except ConfigError as exc:
            yield str(exc)
        return
    ledger = job.state_dir / SQLITE_FILE
    if not ledger.is_file() or ledger.stat().st_size == 0:
        return  # a new ledger: created at the run's start
    try:
        connection = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=30)
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if LedgerDamaged.is_damage(exc):
            raise LedgerDamaged(str(ledger), str(exc)) from exc
        yield f"ledger {ledger}: cannot be read ({exc}). Fix: check the file and its folder"
