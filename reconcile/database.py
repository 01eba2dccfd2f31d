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
import contextvars
import dataclasses
import hashlib
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from reconcile.exceptions import ConfigError

if TYPE_CHECKING:
    import sqlite3

    import psycopg
    from psycopg.rows import TupleRow

#: A value bound to a ``?`` placeholder.
Param: TypeAlias = str | int | float | bytes | None
#: A row as either driver returns it (sqlite3's are tuples too): its values' types are the
#: SQL's to decide, so the reader narrows them.
Row: TypeAlias = "TupleRow"

SQLITE_FILE = "ledger.sqlite3"
#: The schema version this code writes; ``reconcile ledger migrate`` brings a database to it.
#: 2: run locks' holders and the ledger's write order; 3: the console's uploads.sheet and
#: the History's indexes.
SCHEMA_VERSION = 3
#: The SQLite write-ahead log's size past which a run checkpoints it (and to which the file is
#: cut back after): the state dir's peak is the ledger plus about twice this.
CHECKPOINT_BYTES = 4 * 2**20


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


#: The environment variable naming a PostgreSQL ledger, over a job file's ``ledger_url``.
LEDGER_URL_ENV = "RECONCILE_LEDGER_URL"


def given_ledger_url(given: str | None, environ: Mapping[str, str]) -> str | None:
    """The ledger URL given on the command line, else ``RECONCILE_LEDGER_URL``; None when
    neither is (the job file's ``ledger_url`` then, else SQLite in its state dir)."""
    return given or environ.get(LEDGER_URL_ENV) or None


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
    def rows(self, sql: str, params: Sequence[Param] = ()) -> list[Row]: ...

    @abc.abstractmethod
    def run(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Execute a statement; the number of rows it changed."""

    @abc.abstractmethod
    def run_many(self, sql: str, params: Sequence[Sequence[Param]]) -> None: ...

    @abc.abstractmethod
    def transaction(self, lock: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Statements inside commit together; ``lock`` names a lock held until the commit, so
        that writers of one kind go one at a time (the audit chain's appends)."""

    @abc.abstractmethod
    def script(self, ddl: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def checkpoint_due(self) -> bool:
        """The write-ahead log has grown past its bound (SQLite; never for PostgreSQL)."""
        return False

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database, off the writer's connection (SQLite;
        nothing to do for PostgreSQL)."""
        return None

    def one(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def columns(self, table: str) -> set[str]:
        """The table's column names (for the migrations of older ledgers)."""
        raise NotImplementedError


_READING_ONLY = contextvars.ContextVar("reading_only", default=False)


@contextlib.contextmanager
def reading_only() -> Iterator[None]:
    """For the commands that only read (``runs``, ``audit verify``, ``audit export`` to
    stdout): a SQLite ledger that a full disk keeps from opening normally is opened read-only."""
    token = _READING_ONLY.set(True)
    try:
        yield
    finally:
        _READING_ONLY.reset(token)


def _wal_bytes(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.shown = str(path)
        self._path = path
        self._checkpointer: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._db: sqlite3.Connection
        try:
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            with self._damage():
                self._configure()
        except sqlite3.OperationalError:
            # A full disk has no room for the WAL's index (-shm): a command that only reads
            # (reading_only) reads the file as it stands, when no WAL holds newer commits.
            if not _READING_ONLY.get() or _wal_bytes(path) > 0:
                raise
            with contextlib.suppress(AttributeError):
                self._db.close()
            self._db = sqlite3.connect(
                f"{path.resolve().as_uri()}?immutable=1", uri=True, check_same_thread=False
            )

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
        # The WAL's bound (unbounded, it reaches tens of MB in a 5,000-row run). A run's recorder
        # checkpoints in a worker thread on a connection of its own (checkpoint()) once the WAL
        # passes CHECKPOINT_BYTES, so that sends never wait for the fsync; the writer's own
        # automatic checkpoint is the backstop, and journal_size_limit shrinks the file after.
        self._db.execute(f"PRAGMA wal_autocheckpoint={2 * CHECKPOINT_BYTES // 4096}")
        self._db.execute(f"PRAGMA journal_size_limit={CHECKPOINT_BYTES}")

    def rows(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        with self._lock, self._damage():
            return self._db.execute(sql, tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Param] = ()) -> int:
        with self._lock, self._damage():
            return self._db.execute(sql, tuple(params)).rowcount

    def run_many(self, sql: str, params: Sequence[Sequence[Param]]) -> None:
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
        import sqlite3

        with self._lock, self._damage():
            try:
                self._db.executescript(ddl)
            except sqlite3.OperationalError:
                if not _READING_ONLY.get():
                    raise  # (reading only: the tables that exist are read, as they are)

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.rows(f"PRAGMA table_info({table})")}

    def checkpoint_due(self) -> bool:
        return _wal_bytes(self._path) > CHECKPOINT_BYTES

    def checkpoint(self) -> None:
        """PASSIVE: copies what it can without waiting for (or blocking) the writer."""
        import sqlite3

        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self._path, timeout=30, isolation_level=None, check_same_thread=False
            )
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        import sqlite3

        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.OperationalError:
                pass  # a full disk: the WAL keeps it all; the next writer's checkpoint copies it
            finally:
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
    def _connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
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

    def rows(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        with self._connection() as connection:
            cursor = connection.execute(_pg(sql), tuple(params))
            return cursor.fetchall() if cursor.description else []

    def run(self, sql: str, params: Sequence[Param] = ()) -> int:
        with self._connection() as connection:
            return int(connection.execute(_pg(sql), tuple(params)).rowcount)

    def run_many(self, sql: str, params: Sequence[Sequence[Param]]) -> None:
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


def usable_state_dir(state_dir: Path) -> Path:
    """``state_dir``, created if needed; a ConfigError (nothing sent) when it cannot be."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"state_dir {state_dir}: cannot be used as the ledger's folder ({exc.strerror}). "
            "Fix: set state_dir in the job file (or --state-dir) to a folder this user can write."
        ) from None
    return state_dir


def open_database(
    storage: Storage, *, require_schema: bool = True, pool_size: int = RUN_POOL_SIZE
) -> Database:
    """The storage's database: PostgreSQL (a pool of ``pool_size`` connections) when it has a
    ledger URL, else the SQLite file in its state dir (created, with its folder, if needed)."""
    if storage.ledger_url is not None:
        return PostgresDatabase(
            storage.ledger_url, max_size=pool_size, require_schema=require_schema
        )
    return SqliteDatabase(usable_state_dir(storage.state_dir) / SQLITE_FILE)
