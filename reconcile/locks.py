"""Run locks: two runs that could send the same requests never overlap.

With the SQLite ledger (one machine) the lock is an OS file lock per job in ``state_dir``
(:func:`reconcile.ledger.run_lock`). With a PostgreSQL ledger a run holds one session-level
advisory lock per (operation, base URL, community) it may send to, on a connection of its own:
two hosts running different ``--community`` shards of one file run side by side, the same
community twice fails at once (exit 2), and a lock is released by the server the moment its
holder's connection dies (a killed process, a lost host).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from pathlib import Path

from reconcile.database import LedgerUnavailable, check_reachable, lock_key, redacted
from reconcile.exceptions import RunLockedError
from reconcile.job import Job
from reconcile.ledger import run_lock


def community_lock_name(job: Job, community: str) -> str:
    return f"reconcile run {job.operation} {job.base_url} {community}"


@contextlib.contextmanager
def job_lock(job: Job, communities: Collection[str] | None = None) -> Iterator[Path | None]:
    """Hold the run's locks until the block ends (RunLockedError at once when taken)."""
    if job.ledger_url is None:
        key = str(job.path.resolve()) if job.path else f"{job.operation} {job.base_url}"
        with run_lock(job.state_dir, key) as path:
            yield path
        return
    with _community_locks(job, sorted(communities or job.communities)):
        yield None


@contextlib.contextmanager
def _community_locks(job: Job, communities: list[str]) -> Iterator[None]:
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
        for community in communities:
            name = community_lock_name(job, community)
            (taken,) = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key(name),)
            ).fetchone() or (False,)
            if not taken:
                raise RunLockedError(
                    f"a run sending to community {community!r} ({job.operation} at "
                    f"{job.base_url}) is in progress, locked in {redacted(job.ledger_url)}. Wait "
                    "for it to finish: the lock is released when that process ends, even if it "
                    "crashes"
                )
        yield
    finally:
        connection.close()  # releases every advisory lock of this session
