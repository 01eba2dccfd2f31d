"""Run locks: two runs that could send the same requests never overlap.

"The same requests" are those with the same fingerprint material before the body: the
operation, the base URL and the community (:func:`reconcile.ledger.fingerprint`). So a real run
holds one lock per (operation, base URL, community) it may send to, whatever job file, copy,
hard link, symlink or checkout it was started from. The lock lives with the ledger, since the
ledger is what makes a request "sent once":

- SQLite ledger (one machine): an OS file lock (``flock``) per target in ``state_dir/locks``,
  named after the target, not the job file; the OS releases it the moment its holder dies. Two
  job files with the same ``state_dir`` (by any path) share it. Two job files with *different*
  state dirs have two ledgers, which cannot know each other's requests (a second run would send
  them again even one after the other): give every job file of one target the same state dir.
- PostgreSQL ledger: a session-level advisory lock per target on a connection of its own,
  released by the server the moment the connection dies (a killed process, a lost host).

Each lock records its holder (host, pid, run id once known, since when), so the refusal (exit 2)
names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import socket
import threading
import urllib.parse
from collections.abc import Collection, Iterator
from typing import Any, Protocol

from reconcile.database import (
    LedgerUnavailable,
    check_reachable,
    lock_key,
    redacted,
    usable_state_dir,
)
from reconcile.exceptions import RunLockedError
from reconcile.job import Job
from reconcile.ledger import now_iso

_WAIT = "Wait for it to finish: the lock is released when that process ends, even if it crashes."


def target_of(base_url: str) -> str:
    """The base URL as the lock compares it: scheme and host in lower case, no trailing
    slash (``HTTPS://API.example.com/`` and ``https://api.example.com`` are one target)."""
    parts = urllib.parse.urlsplit(base_url.strip())
    return urllib.parse.urlunsplit(
        parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower())
    ).rstrip("/")


def community_lock_name(job: Job, community: str) -> str:
    """The lock's name: what two runs must share to send the same requests."""
    return f"reconcile run {job.operation} {target_of(job.base_url)} {community}"


def holder_line(run_id: str | None, since: str) -> str:
    """Who holds a lock, for the refusal another run prints."""
    run = f", run {run_id}" if run_id else ""
    return f"pid {os.getpid()} on host {socket.gethostname()}{run}, since {since}"


class _Held(Protocol):
    def note_run(self, run_id: str) -> None: ...


#: The locks this thread holds (a console runs several jobs at once, one per thread).
_held = threading.local()


def note_run(run_id: str) -> None:
    """Write the run id into every lock this thread holds (the refusal then names the run)."""
    for lock in getattr(_held, "locks", []):
        lock.note_run(run_id)


@contextlib.contextmanager
def _registered(locks: list[_Held]) -> Iterator[None]:
    before = list(getattr(_held, "locks", []))
    _held.locks = before + locks
    try:
        yield
    finally:
        _held.locks = before


@contextlib.contextmanager
def job_lock(job: Job, communities: Collection[str] | None = None) -> Iterator[None]:
    """Hold the run's locks until the block ends (RunLockedError at once when one is taken)."""
    names = [(c, community_lock_name(job, c)) for c in sorted(communities or job.communities)]
    with contextlib.ExitStack() as stack:
        if job.ledger_url is None:
            held: list[_Held] = [
                stack.enter_context(_file_lock(job, community, name)) for community, name in names
            ]
        else:
            held = [stack.enter_context(_advisory_locks(job, names))]
        stack.enter_context(_registered(held))
        yield


def _refusal(job: Job, community: str, holder: str, where: str) -> RunLockedError:
    return RunLockedError(
        f"a run sending to community {community!r} ({job.operation} at {job.base_url}) is in "
        f"progress: held by {holder or 'another process'}; {where}. {_WAIT}"
    )


@dataclasses.dataclass(slots=True)
class _FileLock:
    handle: Any
    name: str
    since: str

    def note_run(self, run_id: str) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{holder_line(run_id, self.since)}\n{self.name}\n")
        self.handle.flush()


@contextlib.contextmanager
def _file_lock(job: Job, community: str, name: str) -> Iterator[_FileLock]:
    folder = usable_state_dir(job.state_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"target-{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.readline().strip()
            raise _refusal(job, community, holder, f"lock file {path}") from None
        lock = _FileLock(handle, name, now_iso())
        lock.note_run("")
        yield lock  # closing the file releases the lock


@dataclasses.dataclass(slots=True)
class _AdvisoryLocks:
    connection: Any
    names: list[str]
    since: str

    def note_run(self, run_id: str) -> None:
        import psycopg

        try:
            for name in self.names:
                self.connection.execute(
                    "INSERT INTO run_locks (name, holder, since) VALUES (%s, %s, %s) ON "
                    "CONFLICT (name) DO UPDATE SET holder = excluded.holder, since = "
                    "excluded.since",
                    (name, holder_line(run_id or None, self.since), self.since),
                )
        except psycopg.OperationalError as exc:  # the lock's connection is gone: so is the lock
            raise LedgerUnavailable(f"the run lock's connection was lost: {exc}") from None


@contextlib.contextmanager
def _advisory_locks(job: Job, names: list[tuple[str, str]]) -> Iterator[_AdvisoryLocks]:
    import psycopg

    assert job.ledger_url is not None
    check_reachable(job.ledger_url)  # a clear exit 2 for a bad URL, password or schema
    try:
        connection = psycopg.connect(job.ledger_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise LedgerUnavailable(
            f"the ledger database {redacted(job.ledger_url)} is unreachable: {exc}"
        ) from None
    try:
        for community, name in names:
            (taken,) = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key(name),)
            ).fetchone() or (False,)
            if not taken:
                found = connection.execute(
                    "SELECT holder FROM run_locks WHERE name = %s", (name,)
                ).fetchone()
                where = f"locked in {redacted(job.ledger_url)}"
                raise _refusal(job, community, found[0] if found else "", where)
        locks = _AdvisoryLocks(connection, [n for _, n in names], now_iso())
        locks.note_run("")
        yield locks
    finally:
        connection.close()  # releases every advisory lock of this session
