"""The run ledger: an embedded SQLite database (WAL) that survives crashes.

Every request has a fingerprint (base URL, operation, community, method, path, canonical body).
Before a request is sent the ledger records it ``in_flight`` and commits; after the answer, its
outcome, committed at once. So after a crash the next run knows what was applied (never sent
again), what was in flight (outcome unknown) and what never went out.

The ledger also keeps one record per run (dry runs included) for ``reconcile runs``; the run
locks live beside it (:mod:`reconcile.locks`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconcile import liveness
from reconcile.database import Storage, as_storage, open_database
from reconcile.lazy import pl
from reconcile.schema import create_schema, next_seq

IN_FLIGHT = "in_flight"
#: Request states after which a record may hold another value than a request set there.
_CHANGED_STATES = ("applied", "unknown", IN_FLIGHT)
#: Fingerprints per lookup query (SQLite allows 32,766 parameters since 3.32).
_LOOKUP_CHUNK = 10_000


#: Why a run was marked interrupted by whatever opened the ledger after it.
INTERRUPTED_CAUSE = "its process ended without recording the run's end (killed, or its host lost)"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def fingerprint(
    base_url: str, operation: str, community: str, method: str, path: str, body: str | None
) -> str:
    """What makes two requests the same correction (the base URL too: a sandbox rehearsal must
    never make production think a row is applied). The definition: ledgers keep these."""
    material = json.dumps(
        [base_url, operation, community, method, path, body or ""], ensure_ascii=False
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


#: Characters json.dumps writes as escapes besides the quote and the backslash.
_CONTROL = r"[\x00-\x1f]"


def fingerprints(base_url: str, operation: str, requests: pl.DataFrame) -> pl.Series:
    """``fingerprint`` of each request (columns community, method, path, body), identical to
    the function, without a json.dumps per row.

    For text without control characters, ``json.dumps(..., ensure_ascii=False)`` only escapes
    the backslash and the quote, so polars builds those materials; the rare rows with a control
    character (a newline in a body) go through ``fingerprint`` itself. Hashing stays hashlib's.
    """
    fields = [
        pl.lit(base_url),
        pl.lit(operation),
        pl.col("community"),
        pl.col("method"),
        pl.col("path"),
        pl.col("body").cast(pl.String).fill_null(""),
    ]
    quoted = [
        pl.concat_str(
            pl.lit('"'),
            f.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True),
            pl.lit('"'),
        )
        for f in fields
    ]
    built = requests.select(
        pl.concat_str(pl.lit("["), pl.concat_str(quoted, separator=", "), pl.lit("]")).alias(
            "material"
        ),
        pl.any_horizontal(f.str.contains(_CONTROL) for f in fields).alias("special"),
    )
    keys = [hashlib.sha256(m.encode("utf-8")).hexdigest() for m in built.get_column("material")]
    special = built.get_column("special")
    rows = requests.filter(special).select("community", "method", "path", "body").iter_rows()
    for index, row in zip(special.arg_true().to_list(), rows, strict=True):
        keys[index] = fingerprint(base_url, operation, *row)
    return pl.Series("fingerprint", keys, dtype=pl.String)


@dataclasses.dataclass(frozen=True, slots=True)
class PriorState:
    """What earlier runs left for one fingerprint."""

    state: str
    run_id: str
    updated_at: str
    seq: int
    """Where in the ledger's order of writes (the order decisions use; the time is for people)."""


class Ledger:
    """Runs and requests, in SQLite (``state_dir``) or PostgreSQL (``ledger_url``): the same
    SQL over :class:`reconcile.database.Database`."""

    def __init__(self, where: Path | Storage) -> None:
        storage = as_storage(where)
        self.storage = storage
        self.db = open_database(storage)
        if self.db.dialect == "sqlite":
            create_schema(self.db)
        seq = next_seq(self.db)
        self._in_flight_sql = _IN_FLIGHT_SQL.format(seq=seq)
        self._finished_sql = _FINISHED_SQL.format(seq=seq)
        self._write_lock = threading.Lock()
        self.interrupted = self.mark_interrupted()

    def mark_interrupted(self) -> list[str]:
        """Runs with no end whose process is gone (killed, crashed, lost its host): ended now
        as ``interrupted``, with their requests per state; the ids. Runs still running
        (:mod:`reconcile.liveness`) are left alone. Best effort: on a full disk or a read-only
        ledger nothing is marked and the ledger still opens for reading."""
        try:
            found = self.db.rows("SELECT run_id FROM runs WHERE ended_at IS NULL")
            gone = liveness.gone(self.storage, [r for (r,) in found])
            for run_id in gone:
                states = self.db.rows(
                    "SELECT state, COUNT(*) FROM requests WHERE run_id = ? GROUP BY state",
                    (run_id,),
                )
                counts = {
                    "ended": "interrupted",
                    "cause": INTERRUPTED_CAUSE,
                    "requests": dict(states),
                }
                self.db.run(
                    "UPDATE runs SET ended_at = ?, counts = ? WHERE run_id = ? AND ended_at IS NULL",
                    (now_iso(), json.dumps(counts), run_id),
                )
        except Exception:  # a full disk, a read-only state dir: reading still works
            return []  # (no log line: the listing commands print nothing but their listing)
        return gone

    def close(self) -> None:
        self.db.close()

    # --- runs --------------------------------------------------------------------------------
    def start_run(self, run: Mapping[str, Any]) -> None:
        columns = ", ".join(run)
        marks = ", ".join("?" for _ in run)
        self.db.run(f"INSERT INTO runs ({columns}) VALUES ({marks})", tuple(run.values()))

    def end_run(
        self, run_id: str, *, counts: Mapping[str, Any], exit_code: int, results_path: str
    ) -> None:
        self.db.run(
            "UPDATE runs SET ended_at = ?, counts = ?, exit_code = ?, results_path = ? WHERE run_id = ?",
            (now_iso(), json.dumps(counts), exit_code, results_path, run_id),
        )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        found = self.db.rows(
            f"SELECT {_RUN_LIST} FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)
        )
        return [_row(r) for r in found]

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.db.rows(
            f"SELECT {_RUN_LIST} FROM runs WHERE run_id = ? OR run_id LIKE ?",
            (run_id, run_id + "%"),
        )
        if len(rows) != 1:
            return None
        found = _row(rows[0])
        states = self.db.rows(
            "SELECT state, COUNT(*) FROM requests WHERE run_id = ? GROUP BY state",
            (found["run_id"],),
        )
        found["requests"] = dict(states)
        return found

    # --- requests ----------------------------------------------------------------------------
    def prior(self, fingerprints: Sequence[str]) -> dict[str, PriorState]:
        """For each fingerprint with history: its latest applied record if any run applied it,
        else its latest record. (A fingerprint given twice is only looked up twice.)"""
        select = "SELECT fingerprint, state, run_id, updated_at, seq FROM requests"
        recorded = self._recorded()
        if recorded <= len(fingerprints):
            # A ledger smaller than the file: reading it whole beats one lookup per request.
            wanted = set(fingerprints)
            rows = self.db.rows(f"{select} ORDER BY seq")
            return _latest_or_applied(r for r in rows if r[0] in wanted)
        found: dict[str, PriorState] = {}
        for start in range(0, len(fingerprints), _LOOKUP_CHUNK):
            chunk = fingerprints[start : start + _LOOKUP_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.rows(f"{select} WHERE fingerprint IN ({marks}) ORDER BY seq", chunk)
            found.update(_latest_or_applied(rows))
        return found

    def later_changes(self, base_url: str, operation: str, targets: pl.DataFrame) -> pl.DataFrame:
        """Every record that may have changed one of ``targets`` (``community``, ``target``): its
        request applied, in flight or unknown, against this base URL with this operation.
        Columns ``community``, ``target``, ``changed_by`` (fingerprint), ``changed_run``,
        ``changed_at`` (for people), ``changed_seq`` (the ledger's order); a correction applied
        before one of them may have been overwritten."""
        select = (
            "SELECT r.community, r.target, r.fingerprint, r.run_id, r.updated_at, r.seq "
            "FROM requests r "
            "JOIN runs u ON u.run_id = r.run_id WHERE u.base_url = ? AND u.operation = ? "
            f"AND r.state IN ({', '.join('?' for _ in _CHANGED_STATES)}) "
        )
        rows: list[tuple[str, str, str, str, str, int]] = []
        for community, part in targets.unique().partition_by("community", as_dict=True).items():
            wanted = part.get_column("target").to_list()
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                rows += self.db.rows(
                    f"{select} AND r.community = ? AND r.target IN ({marks})",
                    (base_url, operation, *_CHANGED_STATES, community[0], *chunk),
                )
        return pl.DataFrame(
            rows,
            schema={
                "community": pl.String,
                "target": pl.String,
                "changed_by": pl.String,
                "changed_run": pl.String,
                "changed_at": pl.String,
                "changed_seq": pl.Int64,
            },
            orient="row",
        )

    def known_targets(self, limit: int) -> pl.DataFrame | TooManyToHold:
        """The distinct ``community``, ``method``, ``path`` of every recorded request, when the
        ledger has at most ``limit`` records (else TooManyToHold: looking each request up is
        cheaper). A request whose target is not among them has no history, so needs no
        fingerprint."""
        recorded = self._recorded()
        if recorded > limit:
            return TooManyToHold(recorded)
        rows = self.db.rows("SELECT DISTINCT community, method, path FROM requests")
        return pl.DataFrame(
            rows,
            schema={"community": pl.String, "method": pl.String, "path": pl.String},
            orient="row",
        )

    def commit(
        self, in_flight: Sequence[RequestRecord], finished: Sequence[FinishedRecord]
    ) -> None:
        """Record requests about to leave and outcomes that came back in one transaction
        (group commit), all stamped with its time."""
        stamp = now_iso()
        with self._write_lock, self.db.transaction():
            self.db.run_many(
                self._in_flight_sql, [(*r.identity(), IN_FLIGHT, stamp) for r in in_flight]
            )
            self.db.run_many(
                self._finished_sql,
                [
                    (*f.request.identity(), f.state, f.http_status, f.error, f.attempts, stamp)
                    for f in finished
                ],
            )

    def _recorded(self) -> int:
        found = self.db.one("SELECT COUNT(*) FROM requests")
        return int(found[0]) if found else 0


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the ledger keeps of a request: its run, fingerprint and where it went."""

    run_id: str
    fingerprint: str
    community: str
    method: str
    path: str
    target: str | None

    def identity(self) -> tuple[str, str, str, str, str, str | None]:
        return (self.run_id, self.fingerprint, self.community, self.method, self.path, self.target)


@dataclasses.dataclass(frozen=True, slots=True)
class FinishedRecord:
    """A request's outcome, as the ledger keeps it (``unknown`` when it may have applied)."""

    request: RequestRecord
    state: str
    http_status: int | None
    error: str | None
    attempts: int


@dataclasses.dataclass(frozen=True, slots=True)
class TooManyToHold:
    """The ledger holds more records than are worth reading whole: look requests up one by one."""

    recorded: int


#: The in-flight record, committed before the request leaves; ``{seq}``: the ledger's next
#: number (:func:`reconcile.schema.next_seq`), assigned again at every write of a record.
_IN_FLIGHT_SQL = (
    "INSERT INTO requests (run_id, fingerprint, community, method, path, target, state, "
    "updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {seq}) ON CONFLICT (run_id, fingerprint) "
    "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, seq = excluded.seq"
)
_FINISHED_SQL = (
    "INSERT INTO requests (run_id, fingerprint, community, method, path, target, state, "
    "http_status, error, attempts, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "{seq}) ON CONFLICT (run_id, fingerprint) DO UPDATE SET state = excluded.state, "
    "http_status = excluded.http_status, error = excluded.error, "
    "attempts = excluded.attempts, updated_at = excluded.updated_at, seq = excluded.seq"
)


#: The columns of ``runs``, in the order ``_row`` reads them.
RUN_COLUMNS = (
    "run_id",
    "started_at",
    "ended_at",
    "dry_run",
    "operation",
    "base_url",
    "job_path",
    "input_path",
    "input_sha256",
    "results_path",
    "operator",
    "tool_version",
    "counts",
    "exit_code",
)
_RUN_LIST = ", ".join(RUN_COLUMNS)


def _row(values: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(RUN_COLUMNS, values, strict=True))
    if record.get("counts"):
        record["counts"] = json.loads(record["counts"])
    return record


def _latest_or_applied(
    rows: Iterable[tuple[str, str, str, str, int]],
) -> dict[str, PriorState]:
    """Ledger rows in the ledger's order -> per fingerprint its latest applied record if any,
    else its latest record."""
    found: dict[str, PriorState] = {}
    for key, state, run_id, updated_at, seq in rows:
        current = found.get(key)
        if current is None or current.state != "applied" or state == "applied":
            found[key] = PriorState(state, run_id, updated_at, seq)
    return found
