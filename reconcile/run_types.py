"""What a run is given and what it gives back: the types every layer above the steps shares.

:class:`RunOptions` is what the command line (or the API, or the console) adds to the job;
:class:`Prepared` a file read, validated and planned; :class:`RunResult` its per-row outcomes
and :class:`Manifest`; :class:`Wait` how a real run queues for its lock. They live below the
pipeline so that the approval, queueing and recording steps can name them without importing it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NotRequired, TypedDict

from reconcile.outcome import OnProgress, Selection

if TYPE_CHECKING:
    import polars as pl

    from reconcile.dispatch import OnAnswer
    from reconcile.job import Job
    from reconcile.operations.base import Operation
    from reconcile.plan import RequestPlan
    from reconcile.plan_store import ApprovedPlan
    from reconcile.table import Table

#: What a row of a community the run was not asked to send says (``--community``).
NOT_SELECTED = "not selected (--community)"

#: ``--wait`` without ``--wait-timeout``: an hour (a plan run waits at most until its approval
#: expires, whichever comes first).
DEFAULT_WAIT_SECONDS = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """How a run waits for its lock (``None`` instead of a Wait: it fails at once)."""

    timeout_seconds: float = DEFAULT_WAIT_SECONDS
    until: str = "--wait-timeout"
    """What set the deadline, named when it passes (``--wait-timeout``, the approval's expiry)."""
    may_try: Callable[[], bool] | None = None
    """False while another waiter goes first (the console's first-approved, first-run order)."""
    wake: threading.Condition | None = None
    """Notified when a lock may have been freed: the next try comes at once."""
    on_queued: Callable[[str], None] | None = None
    """Called once, with why the run waits (the lock's refusal), when it is first queued."""
    on_started: Callable[[float], None] | None = None
    """Called with the seconds waited, once the locks are held."""
    cancel: threading.Event | None = None
    """Set to stop waiting (the run ends as refused: nothing sent)."""

    def bounded(self, seconds: float, until: str) -> Wait:
        """This wait, ending after ``seconds`` at most (named ``until`` when that is sooner)."""
        if seconds >= self.timeout_seconds:
            return self
        return dataclasses.replace(self, timeout_seconds=max(seconds, 0.0), until=until)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to run, besides the job: what the command line adds."""

    dry_run: bool = False
    force: bool = False
    quiet: bool = False
    handle_signals: bool = True
    communities: frozenset[str] | None = None
    """Only these communities' rows are sent; the others are skipped ("not selected")."""
    sheet: str | None = None
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict)
    given_credentials: Mapping[str, Mapping[str, str]] | None = None
    lock_held: bool = False
    """The caller holds the job's run lock (``job_lock``) for several inputs."""
    plan: ApprovedPlan | None = None
    """Apply this approved plan: only if the file and job still make exactly its requests."""
    submit: bool = True
    """A dry run's plan goes before the approvers at once (the console's check: False, its
    maker submits it after looking)."""
    on_progress: OnProgress | None = None
    """Called with (community, status) as each request ends (the console's live progress)."""
    cancel: threading.Event | None = None
    """Set from any thread to stop the run as Ctrl-C does: no new requests, in-flight ones get
    ``interrupt_grace_seconds``, results written, exit code 130."""
    on_answer: OnAnswer | None = None
    """Sees each write's answer as it comes back (``run --verify``: :mod:`reconcile.echoes`)."""
    wait: Wait | None = None
    """Queue behind a run that holds the lock instead of failing at once (``run --wait``, the
    console): a plan's run waits at most until its approval expires."""


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """A file read, validated and planned: nothing sent yet."""

    job: Job
    operation: Operation
    table: Table
    validated: pl.DataFrame
    plan: RequestPlan


class Counts(TypedDict, total=False):
    """A run's counts: per status and per community when it ended; how it ended and its
    requests' ledger states when it stopped early."""

    rows: int
    per_status: dict[str, int]
    per_community: dict[str, dict[str, int]]
    ended: str
    requests: dict[str, int]
    error: str | None


class PlanFields(TypedDict, total=False):
    """A manifest's plan fields: a dry run's plan hash and maker; an application's plan, its
    hash, maker and approver."""

    plan_run_id: str
    plan_sha256: str
    maker: str
    approver: str


class InputRecord(TypedDict):
    path: str
    sha256: str


class Manifest(TypedDict):
    """What a run was and how it ended, written beside its results (``manifest.json``) and
    chained in the audit store. A run that stopped early has ``error`` and partial counts."""

    run_id: str
    tool_version: str
    dry_run: bool
    job_file: str | None
    operation: str
    base_url: str
    extra_headers: dict[str, str]
    """Headers every request carries besides the credentials: part of what was sent."""
    input: InputRecord
    results: str
    communities_selected: list[str] | None
    started_at: str
    ended_at: str
    operator: str
    exit_code: NotRequired[int]
    counts: NotRequired[Counts]
    interrupted_by: NotRequired[str | None]
    error: NotRequired[str | None]
    audit_head: NotRequired[str]
    plan_sha256: NotRequired[str]
    maker: NotRequired[str]
    plan_run_id: NotRequired[str]
    approver: NotRequired[str]


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    """Per-row outcomes, and the manifest (run id, counts, exit code) written beside them. A
    large file's dry run (:mod:`reconcile.buckets`) returns the outcomes without ``request``."""

    outcomes: pl.DataFrame
    manifest: Manifest
    selection: Selection = dataclasses.field(default_factory=Selection)

    @property
    def exit_code(self) -> int:
        return self.manifest["exit_code"]

    @property
    def left_other_communities(self) -> bool:
        """Rows of communities the run was not asked to send are still unsent."""
        selected = self.selection.communities
        if selected is None:
            return False
        included = self.outcomes.get_column("community").is_in(sorted(selected)).fill_null(False)
        return not included.all()
