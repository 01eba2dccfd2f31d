"""Which sheet of a workbook, and which job, an upload fits: the console offers a workbook's
sheets before checking it, and names the job a file was made for when it was checked against
another. Uploads waiting for their sheet are held here (under a random token, for one user)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconcile import api, atomic, intake
from reconcile.exceptions import InputError, ReconcileError
from reconcile.job import Job

#: A held workbook nobody chose a sheet for is dropped after this long.
HELD_HOURS = 24


def suffix_of(original_name: str) -> str:
    """The upload's suffix as its user named it (``.XLSX`` -> ``.xlsx``)."""
    return Path(original_name.replace("\\", "/")).suffix.lower()


def sheet_names(path: Path) -> list[str]:
    """The workbook's sheets in their order (``[]`` for a damaged one: the check itself then
    says what is wrong with it)."""
    try:
        return intake.sheet_names(path)
    except InputError:
        return []


def fits(path: Path, job: Job, sheet: str | None = None) -> bool:
    """The file (that sheet) has the columns ``job``'s operation requires: it reads without an
    input error (its rows may still have errors)."""
    try:
        api.validate_file(path, job, sheet=sheet)
    except InputError:
        return False
    except ReconcileError:  # a job problem, not the file's
        return True
    return True


def first_fitting_sheet(path: Path, job: Job, names: Sequence[str]) -> str | None:
    """The first sheet with the job's header, else the first sheet (None: no sheets)."""
    for name in names:
        if fits(path, job, name):
            return name
    return names[0] if names else None


def jobs_it_fits(
    path: Path, jobs: Mapping[str, Job], chosen: str, sheet: str | None = None
) -> list[str]:
    """The other jobs (of another operation than ``chosen``'s) whose required columns the file
    has: "this file looks like a JOB file" (none when it fits ``chosen`` itself: its error
    is then not about the columns)."""
    operation = jobs[chosen].operation if chosen in jobs else None
    if chosen in jobs and fits(path, jobs[chosen], sheet):
        return []
    return [
        name
        for name, job in sorted(jobs.items())
        if name != chosen and job.operation != operation and fits(path, job, sheet)
    ]


class HeldUploads:
    """Workbooks waiting for their user to choose a sheet: the file under a random token,
    with who uploaded it and its name; only that user can take it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def hold(self, original_name: str, data: bytes, user: str) -> str:
        self._drop_stale()
        token = secrets.token_hex(16)
        # The file before its meta: a held upload is found by its meta, and never half there.
        atomic.write_bytes(self._data(token, original_name), data)
        meta = {"name": original_name, "user": user}
        atomic.write_text(self.folder / f"{token}.json", json.dumps(meta))
        return token

    def path(self, token: str, user: str) -> tuple[str, Path] | None:
        """(original name, stored file) of a held upload of ``user``; None: no such upload
        (a bad token, another user's, or dropped)."""
        if len(token) != 32 or any(c not in "0123456789abcdef" for c in token):
            return None
        meta_path = self.folder / f"{token}.json"
        if not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("user") != user:
            return None
        stored = self._data(token, str(meta["name"]))
        return (str(meta["name"]), stored) if stored.exists() else None

    def drop(self, token: str, original_name: str) -> None:
        self._data(token, original_name).unlink(missing_ok=True)
        (self.folder / f"{token}.json").unlink(missing_ok=True)

    def _drop_stale(self) -> None:
        """Workbooks left waiting for over HELD_HOURS (the user went away) are deleted."""
        oldest = time.time() - HELD_HOURS * 3600
        for path in self.folder.iterdir():
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
            except FileNotFoundError:  # another request dropped it first
                continue

    def _data(self, token: str, original_name: str) -> Path:
        return self.folder / f"{token}{suffix_of(original_name)}"
