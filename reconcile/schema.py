"""The store's tables, for SQLite and PostgreSQL alike (the few type names that differ are
translated), and the migration that creates or upgrades them.

SQLite ledgers are created and upgraded when opened (their version in ``PRAGMA user_version``).
A PostgreSQL database is prepared once by ``reconcile ledger migrate`` (its version in
``reconcile_schema``): a run never changes a shared schema by itself, and finds out at once
when it is missing or older. Every step is idempotent (it looks before it adds), so a migration
interrupted half-way simply runs again.

Versions: 1 the tables below; 2 ``requests.seq``, the order the ledger assigned to each write
(ordering decisions never compare clocks: :mod:`reconcile.triage`), and ``run_locks``, who holds
each PostgreSQL run lock (:mod:`reconcile.locks`).
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
CREATE INDEX IF NOT EXISTS requests_by_seq ON requests (seq);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, run_id);
"""
#: Version 2: who holds each run lock (PostgreSQL; SQLite's are lock files).
RUN_LOCKS = """
CREATE TABLE IF NOT EXISTS run_locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    since TEXT NOT NULL
);
"""
#: The PostgreSQL sequence that numbers the ledger's writes (SQLite: MAX(seq) + 1 inside the
#: write transaction, which SQLite runs one at a time).
SEQUENCE = "requests_seq"
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


def continue_sequence(db: Database) -> None:
    """PostgreSQL: the next number after every record's (records copied in keep theirs)."""
    db.run(f"SELECT setval('{SEQUENCE}', (SELECT COALESCE(MAX(seq), 0) + 1 FROM requests), false)")


def next_seq(db: Database) -> str:
    """The SQL expression for the next number of the ledger's order of writes."""
    if db.dialect == "postgresql":
        return f"nextval('{SEQUENCE}')"
    return "(SELECT COALESCE(MAX(seq), 0) + 1 FROM requests)"


def _dialect(ddl: str, dialect: str) -> str:
    if dialect != "postgresql":
        return ddl
    return ddl.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY").replace(" BLOB ", " BYTEA ")


def create_schema(db: Database) -> None:
    """Create what is missing (both dialects), upgrading older SQLite ledgers in place."""
    if db.dialect == "sqlite":
        found = db.one("PRAGMA user_version")
        if found and int(found[0]) >= SCHEMA_VERSION:
            return
        with db.transaction():
            _ledger_tables(db)
            db.run(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    _ledger_tables(db)


def _statements(db: Database, ddl: str) -> None:
    """Each statement of ``ddl`` (not ``script``: SQLite's commits the open transaction)."""
    for statement in (s.strip() for s in ddl.split(";")):
        if statement:
            db.run(statement)


def _ledger_tables(db: Database) -> None:
    _statements(db, _dialect(LEDGER, db.dialect))
    columns = db.columns("requests")
    if "target" not in columns:  # a ledger written before targets were recorded
        db.run("ALTER TABLE requests ADD COLUMN target TEXT")
    if "seq" not in columns:  # version 2: the ledger's own order of writes
        db.run("ALTER TABLE requests ADD COLUMN seq BIGINT")
        _number_old_records(db)
    if db.dialect == "postgresql":
        db.run(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE}")
        continue_sequence(db)
    _statements(db, RUN_LOCKS)
    _statements(db, INDEXES)


def _number_old_records(db: Database) -> None:
    """Records written before version 2 numbered in their stamps' order: the best order they
    have (their clocks); every write after the migration is numbered by the ledger."""
    db.run(
        "CREATE TEMPORARY TABLE reconcile_old_order AS SELECT run_id, fingerprint, ROW_NUMBER() "
        "OVER (ORDER BY updated_at, run_id, fingerprint) AS n FROM requests"
    )
    db.run(
        "UPDATE requests SET seq = o.n FROM reconcile_old_order o "
        "WHERE o.run_id = requests.run_id AND o.fingerprint = requests.fingerprint"
    )
    db.run("DROP TABLE reconcile_old_order")


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
