"""Which unfinished runs are still running: a run holds a lock of its own from before its
ledger record starts until after it ends, released by the OS (SQLite: a file lock in
``state_dir/locks/runs``) or by the database server (PostgreSQL: a session advisory lock) the
moment its process dies, however it dies (SIGKILL, a lost host, power).

Whatever opens the ledger next (:class:`reconcile.ledger.Ledger`) asks :func:`gone` about the
runs that have no end, and marks those whose lock is free ``interrupted``; a run whose lock is
held (another process, another host, a thread of this process) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from reconcile.database import Storage, lock_key


def _path(state_dir: Path, run_id: str) -> Path:
    return state_dir / "locks" / "runs" / f"{run_id}.alive"


def _name(run_id: str) -> str:
    return f"reconcile run alive {run_id}"


@contextlib.contextmanager
def holding(storage: Storage, run_id: str) -> Iterator[None]:
    """Hold run ``run_id``'s liveness lock until the block ends."""
    if storage.ledger_url is not None:
        with _advisory(storage.ledger_url, run_id):
            yield
        return
    path = _path(storage.state_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Empty (an inode, no data block): it can be made on a disk too full for the ledger.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh run id: never contended
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: no checker sees a stale free lock
        os.close(fd)


@contextlib.contextmanager
def _advisory(url: str, run_id: str) -> Iterator[None]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (lock_key(_name(run_id)),))
        yield


def gone(storage: Storage, run_ids: Sequence[str]) -> list[str]:
    """Those of ``run_ids`` whose process holds no liveness lock any more (a run recorded
    before this lock existed has none either)."""
    if storage.ledger_url is not None:
        return _gone_advisory(storage.ledger_url, run_ids)
    return [r for r in run_ids if not _file_held(_path(storage.state_dir, r))]


def _file_held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)  # never created here: read-only state dirs work too
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock just taken, if it was
    return False


def _gone_advisory(url: str, run_ids: Sequence[str]) -> list[str]:
    import psycopg

    found = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        for run_id in run_ids:
            key = lock_key(_name(run_id))
            (free,) = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() or (
                False,
            )
            if free:
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
                found.append(run_id)
    return found
