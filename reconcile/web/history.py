"""The History page's runs: paged and filtered in SQL (job, user, status, date range).

Every run of the console's jobs' ledgers (CLI, cron, inbox and console alike) with its maker,
approver and status, which come from the audit tables beside it: a dry run's plan (maker) and
its decision (approver), a real run's chained manifest (maker and approver of the plan it
applied). One query per ledger, ``LIMIT``/``OFFSET`` over the ``runs_by_start`` index; the
filters are SQL too, so a page costs the same at 10,000 runs as at 10.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypedDict, cast

from reconcile import approval
from reconcile.database import Database, Storage
from reconcile.job import Job
from reconcile.ledger import RUN_COLUMNS

PAGE_SIZE = 50
#: Status filter values and what the page calls them.
STATUSES = {
    "waiting": "checked, waiting",
    "checked": "checked, never submitted",
    "approved": "approved",
    "rejected": "rejected",
    "applied": "all applied",
    "partial": "some rows not applied",
    "stopped": "stopped",
    "unfinished": "unfinished",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Filters:
    """What the History form asks for; empty strings are no filter."""

    job: str = ""
    user: str = ""
    status: str = ""
    since: dt.date | None = None
    until: dt.date | None = None
    """Inclusive: runs started on that day are shown."""
    page: int = 1

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


class HistoryRun(TypedDict):
    """One run on the History page: its ``runs`` row (:data:`~reconcile.ledger.RUN_COLUMNS`)
    and what the audit tables say of it."""

    run_id: str
    started_at: str
    ended_at: str | None
    dry_run: int
    operation: str
    base_url: str
    job_path: str | None
    input_path: str
    input_sha256: str
    results_path: str | None
    operator: str
    tool_version: str
    counts: dict[str, int] | None
    """Rows per status (None: not recorded yet)."""
    exit_code: int | None
    maker: str | None
    approver: str | None
    decision: str | None
    """A dry run's plan: ``waiting``, ``approved`` or ``rejected`` (None: not a plan)."""
    status: str
    """One of :data:`STATUSES`, or ``unfinished``."""
    plan_run_id: str | None
    """The plan: the dry run itself, or the plan a real run applied."""


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryPage:
    runs: list[HistoryRun]
    total: int
    filters: Filters

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def _json(dialect: str, column: str, key: str) -> str:
    if dialect == "postgresql":
        return f"({column}::json ->> '{key}')"
    return f"json_extract({column}, '$.{key}')"


def _people_sql(dialect: str, source: str) -> str:
    """The runs of ``source`` (a table or subquery of ``runs`` rows) with maker, approver,
    decision, status and plan id. The newest manifest of each run is found by one grouped
    read of the chain (a hash join), not a lookup per row."""
    maker = f"COALESCE({_json(dialect, 'p.header', 'maker')}, {_json(dialect, 'm.record', 'maker')}, r.operator)"
    approver = (
        f"COALESCE({_json(dialect, 'd.record', 'decided_by')}, "
        f"{_json(dialect, 'm.record', 'approver')})"
    )
    decision = (
        f"CASE WHEN p.run_id IS NULL THEN NULL "
        f"ELSE COALESCE({_json(dialect, 'd.record', 'decision')}, 'waiting') END"
    )
    status = (
        "CASE WHEN r.exit_code IS NULL THEN 'unfinished' "
        f"WHEN r.dry_run <> 0 THEN COALESCE({decision}, 'checked') "
        "WHEN r.exit_code = 0 THEN 'applied' WHEN r.exit_code = 1 THEN 'partial' "
        "ELSE 'stopped' END"
    )
    plan_id = f"CASE WHEN p.run_id IS NULL THEN {_json(dialect, 'm.record', 'plan_run_id')} ELSE p.run_id END"
    columns = ", ".join(f"r.{c}" for c in RUN_COLUMNS)
    return (
        f"SELECT {columns}, {maker} AS maker, {approver} AS approver, {decision} AS decision, "
        f"{status} AS status, {plan_id} AS plan_run_id FROM {source} r "
        "LEFT JOIN plans p ON p.run_id = r.run_id "
        "LEFT JOIN decisions d ON d.run_id = r.run_id "
        "LEFT JOIN (SELECT run_id, MAX(seq) AS seq FROM audit_chain WHERE kind = 'manifest' "
        "GROUP BY run_id) newest ON newest.run_id = r.run_id "
        "LEFT JOIN audit_chain m ON m.seq = newest.seq"
    )


#: A WHERE clause and its parameters.
Condition = tuple[str, list[str]]


def _run_conditions(filters: Filters, job: Job | None) -> Condition:
    """Job and dates: conditions on the ``runs`` table's own columns (alias ``h``)."""
    conditions: list[str] = []
    params: list[str] = []
    if job is not None:
        conditions.append("h.operation = ? AND h.base_url = ?")
        params += [job.operation, job.base_url]
        if job.path is not None:
            conditions.append("(h.job_path = ? OR h.job_path IS NULL)")
            params.append(str(job.path))
    if filters.since is not None:
        conditions.append("h.started_at >= ?")
        params.append(filters.since.isoformat())
    if filters.until is not None:
        conditions.append("h.started_at < ?")
        params.append((filters.until + dt.timedelta(days=1)).isoformat())
    return _joined(conditions), params


def _people_conditions(filters: Filters, only_maker: str | None) -> Condition:
    """User and status: conditions on what the audit tables say of a run."""
    conditions: list[str] = []
    params: list[str] = []
    if filters.user:
        conditions.append("(h.maker = ? OR h.approver = ?)")
        params += [filters.user, filters.user]
    if only_maker is not None:
        conditions.append("h.maker = ?")
        params.append(only_maker)
    if filters.status:
        conditions.append("h.status = ?")
        params.append(filters.status)
    return _joined(conditions), params


def _joined(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


_NEWEST = "ORDER BY h.started_at DESC, h.run_id DESC"


def _page_query(
    dialect: str, runs: Condition, people: Condition, limit: int, skip: int
) -> tuple[str, str, list[str], list[str]]:
    """(count SQL, page SQL, count params, page params). Without a user or status filter the
    page is chosen from ``runs`` alone (its index) and only its rows are joined to the audit
    tables; with one, every run of the job and dates is judged, then paged."""
    (run_where, run_params), (people_where, people_params) = runs, people
    window = f"LIMIT {int(limit)} OFFSET {int(skip)}"
    if not people_where:
        source = f"(SELECT * FROM runs h{run_where} {_NEWEST} {window})"
        page = f"SELECT * FROM ({_people_sql(dialect, source)}) h {_NEWEST}"
        return f"SELECT COUNT(*) FROM runs h{run_where}", page, run_params, run_params
    source = f"(SELECT * FROM runs h{run_where})"
    judged = f"SELECT * FROM ({_people_sql(dialect, source)}) h{people_where}"
    params = [*run_params, *people_params]
    return f"SELECT COUNT(*) FROM ({judged}) c", f"{judged} {_NEWEST} {window}", params, params


def _storages(jobs: Mapping[str, Job], filters: Filters) -> list[tuple[Storage, Job | None]]:
    """Each ledger to read once (the chosen job's only, when a job is chosen)."""
    if filters.job:
        job = jobs.get(filters.job)
        return [] if job is None else [(job.storage, job)]
    seen: dict[Storage, None] = {}
    for job in jobs.values():
        seen.setdefault(job.storage)
    return [(storage, None) for storage in seen]


def history_page(
    jobs: Mapping[str, Job],
    filters: Filters,
    only_maker: str | None = None,
    shared: tuple[Storage, Database] | None = None,
) -> HistoryPage:
    """One page of runs, newest first, matching ``filters`` (and made by ``only_maker`` when
    given: a submitter sees only their own runs). ``shared``: a storage whose database is
    already open (the console's own pool), read without opening another connection."""
    found: list[HistoryRun] = []
    total = 0
    ledgers = _storages(jobs, filters)
    # One ledger: its page is the page. Several: each one's first offset + 50, merged.
    skip = filters.offset if len(ledgers) == 1 else 0
    people = _people_conditions(filters, only_maker)
    for storage, job in ledgers:
        runs = _run_conditions(filters, job)
        with _database(storage, shared) as db:
            count, page, count_params, page_params = _page_query(
                db.dialect, runs, people, filters.offset + PAGE_SIZE - skip, skip
            )
            total += int((db.one(count, count_params) or (0,))[0])
            found += _records(db.rows(page, page_params))
    found.sort(key=lambda r: (r["started_at"], r["run_id"]), reverse=True)
    start = filters.offset - skip
    return HistoryPage(found[start : start + PAGE_SIZE], total, filters)


@contextlib.contextmanager
def _database(storage: Storage, shared: tuple[Storage, Database] | None) -> Iterator[Database]:
    if shared is not None and shared[0] == storage:
        yield shared[1]
        return
    with approval.store(storage) as audit:
        yield audit.db


_NAMES = (*RUN_COLUMNS, "maker", "approver", "decision", "status", "plan_run_id")


def _records(rows: Iterable[Sequence[object]]) -> list[HistoryRun]:
    """The page query's rows, whose columns are :data:`_NAMES`, as records."""
    records = []
    for row in rows:
        record = dict(zip(_NAMES, row, strict=True))
        counts = record.get("counts")
        if isinstance(counts, str) and counts:
            record["counts"] = json.loads(counts)
        records.append(cast("HistoryRun", record))
    return records


def parse_filters(query: Mapping[str, str]) -> Filters:
    """The History form's query string as filters: unknown statuses and unreadable dates are
    ignored (the form shows what was applied), the page is at least 1."""
    status = query.get("status", "")
    return Filters(
        job=query.get("job", "").strip(),
        user=query.get("user", "").strip(),
        status=status if status in STATUSES else "",
        since=_date(query.get("since", "")),
        until=_date(query.get("until", "")),
        page=max(1, _int(query.get("page", "1"))),
    )


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 1
