"""Where the ledger, plans, approvals and the audit chain live: SQLite in ``state_dir`` (one
machine; the default) or PostgreSQL (``ledger_url``; several hosts, containers). Both run the
same SQL (``?`` placeholders; ``ON CONFLICT`` upserts, which both speak), so the stores above
are written once and tested against both.

A lost PostgreSQL connection raises :class:`LedgerUnavailable`, which stops a run at once
(nothing is sent that was not recorded first) and exits 3, naming the database.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import re
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reconcile.exceptions import ConfigError

SQLITE_FILE = "ledger.sqlite3"
#: The schema version this code writes; ``reconcile ledger migrate`` brings a database to it.
#: 2: run locks' holders and the ledger's write order (issue 27); 3: the console's
#: uploads.sheet and the History's indexes (issue 30).
SCHEMA_VERSION = 3


class LedgerUnavailable(Exception):
    """The ledger database went away mid-run (connection lost, server restarted)."""


class LedgerDamaged(Exception):
    """The SQLite ledger file is damaged ("database disk image is malformed", "file is not a
    database"): exit 3, pointing to ``reconcile ledger check``. A re-run cannot resume until
    the ledger is repaired or restored: what it holds cannot be trusted to say what was sent."""

    #: SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB.
    CODES = (11, 26)

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"the ledger {path} is damaged ({detail})")

    @classmethod
    def is_damage(cls, exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in cls.CODES


@dataclasses.dataclass(frozen=True, slots=True)
class Storage:
    """A job's storage: its state dir (always: locks of the SQLite kind, console files) and,
    when set, the PostgreSQL URL that holds the ledger instead of ``state_dir``."""

    state_dir: Path
    ledger_url: str | None = None

    @property
    def shown(self) -> str:
        """Where, for messages: the file, or the URL without its password."""
        if self.ledger_url is None:
            return str(self.state_dir / SQLITE_FILE)
        return redacted(self.ledger_url)


def as_storage(where: Path | Storage) -> Storage:
    return where if isinstance(where, Storage) else Storage(where)


def redacted(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user@host/db``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Database(abc.ABC):
    """A connection to the store, with the few operations the stores need."""

    dialect: str
    shown: str

    @abc.abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a statement; the number of rows it changed."""

    @abc.abstractmethod
    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def transaction(self, lock: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Statements inside commit together; ``lock`` names a lock held until the commit, so
        that writers of one kind go one at a time (the audit chain's appends)."""

    @abc.abstractmethod
    def script(self, ddl: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def columns(self, table: str) -> set[str]:
        """The table's column names (for migrations of older SQLite ledgers)."""
        raise NotImplementedError


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.shown = str(path)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        with self._damage():
            self._configure()

    @contextlib.contextmanager
    def _damage(self) -> Iterator[None]:
        """A damaged file's errors as LedgerDamaged, naming the file."""
        import sqlite3

        try:
            yield
        except sqlite3.DatabaseError as exc:
            if LedgerDamaged.is_damage(exc):
                raise LedgerDamaged(self.shown, str(exc)) from exc
            exc.add_note(f"ledger {self.shown}")
            raise

    def _configure(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the WAL file);
        # an OS crash may lose the last commits, which then re-send as in flight.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        # Checkpoints (WAL -> database, with an fsync) would stall sends mid-run: let the WAL
        # grow during a run (~40 MB at most) and checkpoint when the run closes the ledger.
        self._db.execute("PRAGMA wal_autocheckpoint=10000")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._damage():
            return self._db.execute(sql, tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock, self._damage():
            return self._db.execute(sql, tuple(params)).rowcount

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._lock, self._damage():
            self._db.executemany(sql, [tuple(p) for p in params])

    @contextlib.contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        with self._lock, self._damage():
            self._db.execute("BEGIN IMMEDIATE")  # one writer at a time: the lock is implied
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def script(self, ddl: str) -> None:
        with self._lock, self._damage():
            self._db.executescript(ddl)

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.rows(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._db.close()


class PostgresDatabase(Database):
    """psycopg 3 over a small pool (the run's writer and its readers); statements outside a
    transaction autocommit."""

    dialect = "postgresql"

    def __init__(self, url: str, *, max_size: int = 2, require_schema: bool = True) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.shown = redacted(url)
        self._errors = (psycopg.OperationalError, psycopg.InterfaceError)
        check_reachable(url, require_schema=require_schema)
        self._pool = ConnectionPool(
            url,
            min_size=min(1, max_size),
            max_size=max_size,
            kwargs={"autocommit": True},
            open=True,
            timeout=15,
            # No check on checkout: a connection that died (the server restarted) must fail
            # the run at once (LedgerUnavailable, exit 3), not be replaced silently mid-run.
        )
        self._local = threading.local()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        held = getattr(self._local, "connection", None)
        if held is not None:
            yield held
            return
        try:
            with self._pool.connection() as connection:
                yield connection
        except self._errors as exc:
            raise LedgerUnavailable(
                f"the ledger database {self.shown} is unreachable: {exc}"
            ) from None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as connection:
            cursor = connection.execute(_pg(sql), tuple(params))
            return cursor.fetchall() if cursor.description else []

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._connection() as connection:
            return int(connection.execute(_pg(sql), tuple(params)).rowcount)

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if not params:
            return
        with self._connection() as connection, connection.cursor() as cursor:
            cursor.executemany(_pg(sql), [tuple(p) for p in params])

    @contextlib.contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        with self._connection() as connection:
            try:
                with connection.transaction():
                    self._local.connection = connection
                    try:
                        if lock is not None:
                            connection.execute(
                                "SELECT pg_advisory_xact_lock(%s)", (lock_key(lock),)
                            )
                        yield
                    finally:
                        self._local.connection = None
            except self._errors as exc:
                raise LedgerUnavailable(
                    f"the ledger database {self.shown} is unreachable: {exc}"
                ) from None

    def script(self, ddl: str) -> None:
        with self._connection() as connection:
            for statement in (s.strip() for s in ddl.split(";")):
                if statement:
                    connection.execute(statement)

    def columns(self, table: str) -> set[str]:
        found = self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,)
        )
        return {name for (name,) in found}

    def close(self) -> None:
        self._pool.close()


def _pg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (no statement here has a literal ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def lock_key(name: str) -> int:
    """A PostgreSQL advisory lock key (signed 64-bit) for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def check_reachable(url: str, *, require_schema: bool = True) -> None:
    """ConfigError (exit 2, nothing sent) for a URL that cannot be used: malformed, a host
    that does not answer, a refused password, or a database without reconcile's schema."""
    import psycopg

    shown = redacted(url)
    if not re.match(r"^postgres(ql)?://", url):
        raise ConfigError(
            f"ledger_url {shown!r} is not a PostgreSQL URL: write postgresql://USER@HOST/DB "
            "(the password in PGPASSWORD or ~/.pgpass, not in the job file)"
        )
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
            found = connection.execute(
                "SELECT to_regclass('reconcile_schema') IS NOT NULL"
            ).fetchone()
            version = None
            if found and found[0]:
                row = connection.execute("SELECT version FROM reconcile_schema").fetchone()
                version = row[0] if row else None
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"ledger database {shown}: cannot connect ({reason}). Fix: check the host, user, "
            "database and password (PGPASSWORD or ~/.pgpass)"
        ) from None
    if require_schema and (version is None or version < SCHEMA_VERSION):
        raise ConfigError(
            f"ledger database {shown} has no reconcile schema (version {SCHEMA_VERSION} "
            f"needed, found {version or 'none'}). Fix: run 'reconcile ledger migrate "
            "--ledger-url URL' (or --job JOB) once"
        )


#: Connections a run's ledger needs: the group-commit writer and one reader (triage, history);
#: the run's locks hold a connection of their own. The console (request threads and
#: background runs) opens its stores with more.
RUN_POOL_SIZE = 2
CONSOLE_POOL_SIZE = 8


def open_database(
    storage: Storage, *, require_schema: bool = True, pool_size: int = RUN_POOL_SIZE
) -> Database:
    """The storage's database: PostgreSQL (a pool of ``pool_size`` connections) when it has a
    ledger URL, else the SQLite file in its state dir (created, with its folder, if needed)."""
    if storage.ledger_url is not None:
        return PostgresDatabase(
            storage.ledger_url, max_size=pool_size, require_schema=require_schema
        )
    from reconcile.ledger import usable_state_dir

    return SqliteDatabase(usable_state_dir(storage.state_dir) / SQLITE_FILE)
