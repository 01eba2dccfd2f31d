"""``reconcile ledger check``: is the ledger sound? What was found, and what to do.

SQLite: ``PRAGMA integrity_check`` on the file, opened read-only (nothing is changed).
PostgreSQL: connect; with the ``amcheck`` extension installed, ``bt_index_check`` on every
index of reconcile's tables; in any case every row of every table read (a damaged page fails
the read). Exit 0 sound, 3 damaged (2: no ledger there, or it cannot be reached).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from reconcile.database import SQLITE_FILE, Storage, check_reachable, redacted
from reconcile.exceptions import ConfigError

if TYPE_CHECKING:
    import sqlite3

    from psycopg import Connection
    from psycopg.rows import TupleRow

#: reconcile's tables in either store (those absent, e.g. the console's, are skipped).
TABLES = (
    "runs",
    "requests",
    "plans",
    "decisions",
    "audit_chain",
    "run_locks",
    "reconcile_schema",
    "users",
    "sessions",
    "sign_in_failures",
    "uploads",
    "console_runs",
)
#: Findings shown at most (SQLite's check can list thousands of pages).
SHOWN = 20

SQLITE_ADVICE = """What to do:
  1. Start no run of the jobs that use this state dir: the ledger cannot tell which requests
     were already sent, so a re-run could send them twice.
  2. Keep a copy of {path} (with its -wal and -shm files, if any) before anything else.
  3. Restore the latest backup of the file, or recover what is readable with SQLite's tool:
       sqlite3 {path} .recover | sqlite3 {path}.recovered
     run 'reconcile ledger check' on the recovered file's folder, then put it in place.
  4. Requests sent after that backup (or lost in the damage) are unknown to the ledger: check
     the last runs' results files and the API ('reconcile verify RUN_ID') before sending again."""
POSTGRES_ADVICE = """What to do:
  1. Start no run against this ledger until it is repaired: it cannot tell what was sent.
  2. Have the database administrator restore or repair it (REINDEX for a damaged index; a
     damaged table: restore from backup or point-in-time recovery).
  3. Requests sent after the restored point are unknown to the ledger: check the last runs'
     results files and the API ('reconcile verify RUN_ID') before sending again."""


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    """What ``ledger check`` found: sound or not, and the lines to print."""

    sound: bool
    lines: list[str]


def check(storage: Storage) -> Checked:
    if storage.ledger_url is not None:
        return _check_postgres(storage.ledger_url)
    return _check_sqlite(storage)


def _check_sqlite(storage: Storage) -> Checked:
    import sqlite3  # its C library: not loaded for the commands that never open a ledger

    path = storage.state_dir / SQLITE_FILE
    if not path.is_file():
        raise ConfigError(
            f"no ledger at {path}. Fix: give the job's --job, or --state-dir of its state_dir"
        )
    findings: list[str]
    counts = ""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            findings = [str(r[0]) for r in connection.execute("PRAGMA integrity_check")]
            if findings == ["ok"]:
                counts = _sqlite_counts(connection)
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        findings = [str(exc)]
    if findings == ["ok"]:
        return Checked(True, [f"ledger {path}: sound (PRAGMA integrity_check: ok){counts}"])
    return Checked(False, _damaged(str(path), findings, SQLITE_ADVICE.format(path=path)))


def _sqlite_counts(connection: sqlite3.Connection) -> str:
    present = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    counts = [
        f"{table} {connection.execute(f'SELECT COUNT(*) FROM {table}').fetchone()[0]}"
        for table in ("runs", "requests", "audit_chain")
        if table in present
    ]
    return f"; {', '.join(counts)}" if counts else ""


def _damaged(where: str, findings: list[str], advice: str) -> list[str]:
    more = len(findings) - SHOWN
    lines = [f"ledger {where}: DAMAGED ({len(findings)} problem(s) found)"]
    lines += [f"  {finding}" for finding in findings[:SHOWN]]
    if more > 0:
        lines.append(f"  ... and {more} more")
    return [*lines, advice]


def _check_postgres(url: str) -> Checked:
    import psycopg

    check_reachable(url)  # exit 2 for a URL, host, password or schema that is not usable
    shown = redacted(url)
    findings: list[str] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        present = [t for t in TABLES if _exists(connection, t)]
        amcheck = connection.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"
        ).fetchone()
        if amcheck:
            findings += _index_findings(connection, present)
        for table in present:
            try:
                connection.execute(
                    f"SELECT COUNT(*) FROM {table} t WHERE t::text IS NOT NULL"
                ).fetchone()
            except psycopg.Error as exc:
                findings.append(f"table {table}: {str(exc).strip().splitlines()[0]}")
    how = "amcheck on every index, every row read" if amcheck else "every row read (no amcheck)"
    if not findings:
        return Checked(True, [f"ledger {shown}: sound ({how}; {len(present)} tables)"])
    return Checked(False, _damaged(shown, findings, POSTGRES_ADVICE))


def _exists(connection: Connection[TupleRow], table: str) -> bool:
    found = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(found and found[0])


def _index_findings(connection: Connection[TupleRow], tables: list[str]) -> list[str]:
    import psycopg

    indexes = connection.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am am ON am.oid = c.relam "
        "WHERE am.amname = 'btree' AND t.relname = ANY(%s) AND pg_table_is_visible(t.oid)",
        (tables,),
    ).fetchall()
    findings = []
    for (index,) in indexes:
        try:
            connection.execute("SELECT bt_index_check(%s::regclass)", (index,))
        except psycopg.Error as exc:
            findings.append(f"index {index}: {str(exc).strip().splitlines()[0]}")
    return findings
