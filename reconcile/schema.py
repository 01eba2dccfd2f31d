"""The store's tables, for SQLite and PostgreSQL alike (the few type names that differ are
translated), and the migration that creates or upgrades them.

SQLite ledgers are created and upgraded when opened, as before. A PostgreSQL database is
prepared once by ``reconcile ledger migrate`` (versioned, idempotent): a run never changes a
shared schema by itself, and finds out at once when it is missing.
"""

from __future__ import annotations

from reconcile.database import SCHEMA_VERSION, Database

LEDGER = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    dry_run INTEGER NOT NULL,
    operation TEXT NOT NULL,
    base_url TEXT NOT NULL,
    job_path TEXT,
    input_path TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    results_path TEXT,
    operator TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    counts TEXT,
    exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS requests (
    run_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    community TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    target TEXT,
    state TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, fingerprint)
);
CREATE INDEX IF NOT EXISTS requests_by_fingerprint ON requests (fingerprint, updated_at);
"""
#: After the migrations: indexes on columns that older ledgers did not have.
INDEXES = """
CREATE INDEX IF NOT EXISTS requests_by_target ON requests (community, target, updated_at);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, run_id);
"""
AUDIT = """
CREATE TABLE IF NOT EXISTS audit_chain (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    run_id TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    run_id TEXT PRIMARY KEY,
    header TEXT NOT NULL,
    plan_sha256 TEXT NOT NULL,
    rows BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    run_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plans_by_input ON plans (plan_sha256);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit_chain (run_id, kind, seq);
"""


CONSOLE = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    key TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    original_name TEXT NOT NULL,
    stored TEXT NOT NULL,
    results TEXT NOT NULL,
    maker TEXT NOT NULL,
    created_at TEXT NOT NULL,
    submitted_at TEXT,
    sheet TEXT
);
CREATE TABLE IF NOT EXISTS console_runs (
    plan_run_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at TEXT NOT NULL,
    real_run_id TEXT,
    results TEXT NOT NULL,
    exit_code INTEGER,
    resumed TEXT,
    error TEXT
);
"""


def _dialect(ddl: str, dialect: str) -> str:
    if dialect != "postgresql":
        return ddl
    return ddl.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY").replace(" BLOB ", " BYTEA ")


def create_schema(db: Database) -> None:
    """Create what is missing (both dialects), upgrading older SQLite ledgers in place."""
    db.script(_dialect(LEDGER, db.dialect))
    if "target" not in db.columns("requests"):  # a ledger written before targets were recorded
        db.run("ALTER TABLE requests ADD COLUMN target TEXT")
    db.script(INDEXES)


def create_audit_schema(db: Database) -> None:
    db.script(_dialect(AUDIT, db.dialect))


def create_console_schema(db: Database) -> None:
    """The web console's users, sessions, uploads and background runs (older users tables
    gain the one-time password mark, older uploads the chosen sheet)."""
    db.script(CONSOLE)
    for table, column, added in (
        ("users", "must_change_password", "INTEGER NOT NULL DEFAULT 0"),
        ("uploads", "sheet", "TEXT"),
    ):
        if db.dialect == "postgresql":
            db.run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {added}")
        elif column not in db.columns(table):
            db.run(f"ALTER TABLE {table} ADD COLUMN {column} {added}")


def migrate(db: Database) -> tuple[int | None, int]:
    """Bring a PostgreSQL database to SCHEMA_VERSION (idempotent, one transaction);
    (version before, version after)."""
    with db.transaction(lock="reconcile schema migration"):
        db.script("CREATE TABLE IF NOT EXISTS reconcile_schema (version INTEGER NOT NULL)")
        found = db.one("SELECT version FROM reconcile_schema")
        before = int(found[0]) if found else None
        create_schema(db)
        create_audit_schema(db)
        create_console_schema(db)
        if before is None:
            db.run("INSERT INTO reconcile_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        elif before < SCHEMA_VERSION:
            db.run("UPDATE reconcile_schema SET version = ?", (SCHEMA_VERSION,))
    return before, max(before or 0, SCHEMA_VERSION)
