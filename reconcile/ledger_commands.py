"""``reconcile ledger migrate`` and ``reconcile ledger copy``: prepare a PostgreSQL ledger, and
move a machine's SQLite ledger into it."""

from __future__ import annotations

from pathlib import Path

from reconcile.database import Database, Storage, open_database
from reconcile.exceptions import ConfigError
from reconcile.schema import continue_sequence, create_audit_schema, create_schema, migrate

#: Tables copied, with their columns (the audit chain keeps its sequence numbers and hashes).
TABLES = {
    "runs": (
        "run_id, started_at, ended_at, dry_run, operation, base_url, job_path, input_path, "
        "input_sha256, results_path, operator, tool_version, counts, exit_code"
    ),
    "requests": (
        "run_id, fingerprint, community, method, path, target, state, http_status, error, "
        "attempts, updated_at, seq"
    ),
    "plans": "run_id, header, plan_sha256, rows",
    "decisions": "run_id, record",
}
CHAIN = "seq, kind, run_id, record, prev_hash, hash"


def migrate_url(url: str) -> str:
    """Create or upgrade the schema; a line saying what was done."""
    db = open_database(Storage(Path(), url), require_schema=False)
    try:
        before, after = migrate(db)
    finally:
        db.close()
    if before == after:
        return f"ledger database {db.shown}: schema version {after}, nothing to do"
    return f"ledger database {db.shown}: schema version {before or 'none'} -> {after}"


def copy(source: Storage, url: str) -> str:
    """Copy the SQLite ledger of ``source`` into the PostgreSQL ledger at ``url``: runs,
    requests, plans and decisions are added when missing (a second copy adds nothing); the
    audit chain is copied whole into an empty chain, or checked equal to the one there."""
    if source.ledger_url is not None:
        raise ConfigError("ledger copy reads a SQLite ledger: give a job without ledger_url")
    sqlite = open_database(source)
    target = open_database(Storage(source.state_dir, url))
    try:
        create_schema(sqlite)
        create_audit_schema(sqlite)
        counts = [
            f"{table} {_copy_table(sqlite, target, table, columns)}"
            for table, columns in TABLES.items()
        ]
        counts.append(f"audit chain {_copy_chain(sqlite, target)}")
        continue_sequence(target)  # the records copied keep their order; new writes follow
    finally:
        sqlite.close()
        target.close()
    return f"copied {source.shown} into {target.shown}: " + ", ".join(counts)


def _copy_table(sqlite: Database, target: Database, table: str, columns: str) -> int:
    rows = sqlite.rows(f"SELECT {columns} FROM {table}")
    marks = ", ".join("?" for _ in columns.split(","))
    before = _count(target, table)
    with target.transaction():
        target.run_many(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING",
            [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows],
        )
    return _count(target, table) - before


def _copy_chain(sqlite: Database, target: Database) -> int:
    rows = sqlite.rows(f"SELECT {CHAIN} FROM audit_chain ORDER BY seq")
    there = target.rows(f"SELECT {CHAIN} FROM audit_chain ORDER BY seq")
    if there:
        if [r[5] for r in there[: len(rows)]] != [r[5] for r in rows]:
            raise ConfigError(
                "the PostgreSQL ledger already has an audit chain that is not this one: "
                "two chains cannot be merged. Fix: copy into an empty database"
            )
        return 0
    with target.transaction(lock="reconcile audit chain"):
        target.run_many(f"INSERT INTO audit_chain ({CHAIN}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        target.run(
            "SELECT setval('audit_chain_seq_seq', (SELECT COALESCE(MAX(seq), 1) FROM audit_chain))"
        )
    return len(rows)


def _count(db: Database, table: str) -> int:
    found = db.one(f"SELECT COUNT(*) FROM {table}")
    return int(found[0]) if found else 0
