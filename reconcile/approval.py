"""Maker-checker: plans, decisions and the tamper-evident audit chain.

Every dry run records its **plan**: who made it, the input file's name and SHA-256, the job's
fingerprint (every setting that changes what is sent, never a secret), and per input row the exact
request or its refusal; the plan's own SHA-256 covers all of that. A second person **approves**
or **rejects** that hash (a decision is final; the maker cannot decide their own plan). A real
run ``--plan RUN_ID`` rebuilds the requests from the file and the current job and sends only if
they are exactly the approved ones.

Plans, decisions and run manifests are appended to one **hash chain** (reconcile.audit) (each record carries the
hash of the one before it, and each record's fields are all under its hash): ``verify`` recomputes
it and names the first record that does not match its store (an edited plan row, a deleted
approval). The chain lives in the ledger's database (SQLite or PostgreSQL).

Identity is ``RECONCILE_USER`` when set, else the OS login name: on a shared account it proves
nothing; the web console's logins are the stronger identity.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile import audit_export
from reconcile.audit import AuditStore, store
from reconcile.canonical_json import same_request
from reconcile.columns import REQUEST_ID, ROW
from reconcile.database import Storage, as_storage
from reconcile.exceptions import ApprovalError, PlanStateError
from reconcile.hashing import legacy_canonical
from reconcile.job import Job
from reconcile.lazy import pl
from reconcile.plan_store import (
    ApprovedPlan,
    Decision,
    PlanHeader,
    PlanRows,
    RecordedPlan,
    StandingRecord,
)
from reconcile.version import __version__

if TYPE_CHECKING:
    from reconcile.run_types import Manifest, PlanFields, Prepared, RunOptions


def acting_user(environ: Mapping[str, str] | None = None) -> str:
    """``RECONCILE_USER`` when set, else the login name of the OS user."""
    environ = os.environ if environ is None else environ
    return environ.get("RECONCILE_USER") or getpass.getuser()


def job_settings(job: Job) -> dict[str, object]:
    """Every job setting that changes what is sent, and no secret: the operation, the base URL,
    the operation's options and each community's credential variables (which key signs it).
    Rates, timeouts and folders change how, not what."""
    return {
        "operation": job.operation,
        "base_url": job.base_url,
        "options": dict(job.options),
        "communities": {
            name: dict(sorted(c.credential_envs.items()))
            for name, c in sorted(job.communities.items())
        },
    }


def fingerprint_of(settings: Mapping[str, object]) -> str:
    """The job's fingerprint: a key that finds a job's plans (the inbox), not an audit hash;
    kept in its first form, so the plans recorded before RFC 8785 are still found."""
    return hashlib.sha256(legacy_canonical(settings).encode()).hexdigest()


# -- the Python API the CLI (and the console) call ---------------------------------------------


def submit(state_dir: Path | Storage, run_id: str, *, user: str) -> StandingRecord:
    """The maker puts the plan before the approvers (a command-line dry run does at once)."""
    with store(state_dir) as audit:
        return audit.submit(run_id, user)


def withdraw(
    state_dir: Path | Storage, run_id: str, *, user: str, note: str | None = None
) -> StandingRecord:
    """The maker takes a submitted, undecided plan back: nobody can approve it after."""
    with store(state_dir) as audit:
        return audit.withdraw(run_id, user, note)


def approve(
    state_dir: Path | Storage, run_id: str, *, note: str | None = None, user: str
) -> Decision:
    with store(state_dir) as audit:
        return audit.decide(run_id, approve=True, user=user, note=note)


def reject(state_dir: Path | Storage, run_id: str, *, note: str, user: str) -> Decision:
    with store(state_dir) as audit:
        return audit.decide(run_id, approve=False, user=user, note=note)


def verify(state_dir: Path | Storage, head: str | None = None) -> list[str]:
    """Every problem of the audit chain; with ``head``, also whether it still extends it."""
    with store(state_dir) as audit:
        return audit.verify() if head is None else audit.verify_head(head)


def chain_head(state_dir: Path | Storage) -> str:
    with store(state_dir) as audit:
        return audit.head()


def export(state_dir: Path | Storage, since: dt.datetime, out: Path | None) -> int:
    """The audit export CSV to ``out``, or to stdout when None."""
    with store(state_dir) as audit:
        return audit_export.export(audit, since, out)


#: Exit codes of an application that stopped before it finished: nothing sent (2), a crash (3),
#: SIGINT / SIGTERM (130 / 143); a killed run records none. ``run --plan`` resumes those (the
#: ledger sends only what it does not hold as applied or unknown); any other exit code ends
#: what the approval allowed.
RESUMABLE_EXIT_CODES = frozenset({2, 3, 130, 143})


def approved_plan(
    state_dir: Path | Storage,
    run_id: str,
    job: Job,
    now: dt.datetime,
    *,
    user: str | None = None,
) -> ApprovedPlan:
    """The plan ``run_id`` if it may be applied now under ``job``; ApprovalError otherwise
    (PlanStateError, recorded in the audit chain, for a plan already applied)."""
    with store(state_dir) as audit:
        plan = audit.plan(run_id)
        if plan is None:
            raise ApprovalError(
                f"no plan {run_id!r} in {as_storage(state_dir).shown}. Fix: check the id with "
                "'reconcile runs'"
            )
        decision = plan.decision
        if decision is None:
            raise ApprovalError(
                f"plan {run_id} is waiting for approval: a colleague runs "
                f"'reconcile approve {run_id} --job JOB' first"
            )
        if decision["decision"] != "approved":
            raise ApprovalError(
                f"plan {run_id} was rejected by {decision['decided_by']} "
                f"({decision.get('note') or 'no note'}): it cannot be applied. Fix the file, "
                "dry-run it again and ask for a new approval"
            )
        age = now - dt.datetime.fromisoformat(decision["decided_at"])
        if now > expires_at(plan, job):
            raise ApprovalError(
                f"the approval of plan {run_id} is {age.total_seconds() / 3600:.0f} hours old, "
                f"over approval_ttl_hours = {job.approval_ttl_hours:g}: dry-run the file again "
                "and ask for a new approval"
            )
        _refuse_applied(audit, run_id, user or acting_user())
        return ApprovedPlan(plan, audit.plan_rows(run_id))


def check_unapplied(state_dir: Path | Storage, approved: ApprovedPlan, user: str) -> None:
    """Asked again under the run's lock, just before sending: two ``run --plan`` of one plan
    started together both passed :func:`approved_plan`; only the first applies it."""
    with store(state_dir) as audit:
        _refuse_applied(audit, approved.recorded.run_id, user)


def refuse_forced(state_dir: Path | Storage, run_id: str, user: str) -> None:
    """``--force`` with ``--plan``: refused and recorded; an approval never covers a re-send."""
    message = (
        f"--force with --plan {run_id}: an approval covers sending its rows once, never a "
        "re-send of rows the ledger holds as applied or unknown; nothing was sent. Fix: dry-run "
        "the file again (with --force if you mean it) and ask for a new approval"
    )
    with store(state_dir) as audit:
        audit.record_action(run_id, user, "apply refused", "--force with --plan")
    raise ApprovalError(message)


def expires_at(plan: RecordedPlan, job: Job) -> dt.datetime:
    """When the approval of ``plan`` (approved) stops covering its application: its decision
    plus ``approval_ttl_hours``. A queued run waits no later; a stopped one restarts before."""
    assert plan.decision is not None
    decided = dt.datetime.fromisoformat(plan.decision["decided_at"])
    return decided + dt.timedelta(hours=job.approval_ttl_hours)


def finished_application(audit: AuditStore, run_id: str) -> Manifest | None:
    """The manifest of the run that finished applying plan ``run_id`` (None: none did; a run
    that stopped with a resumable exit code does not count)."""
    done = (m for m in audit.applications(run_id) if m.get("exit_code") not in RESUMABLE_EXIT_CODES)
    return next(done, None)


def _refuse_applied(audit: AuditStore, run_id: str, user: str) -> None:
    first = finished_application(audit, run_id)
    if first is None:
        return
    audit.record_action(run_id, user, "apply refused", f"already applied by run {first['run_id']}")
    raise PlanStateError(
        f"plan {run_id} was already applied by run {first['run_id']} (ended "
        f"{first.get('ended_at')}, exit code {first.get('exit_code')}): an approval authorises "
        "one application; nothing was sent. Fix: to send rows again, dry-run the file again and "
        "ask for a new approval"
    )


def differences(
    approved: ApprovedPlan, input_sha256: str, job: Job, rebuilt: pl.DataFrame
) -> list[str]:
    """What differs between the approved plan and the file and job of now: the file's hash, each
    job setting, and the first rows whose request (or refusal) changed. Empty: identical."""
    header = approved.recorded.header
    found: list[str] = []
    if input_sha256 != header["input_sha256"]:
        found.append(
            f"the input file changed since the plan (SHA-256 {input_sha256[:12]}..., "
            f"approved {header['input_sha256'][:12]}...)"
        )
    now = job_settings(job)
    for key in sorted(set(now) | set(header["job_settings"])):
        if now.get(key) != header["job_settings"].get(key):
            found.append(
                f"job setting {key} changed: approved {header['job_settings'].get(key)!r}, "
                f"now {now.get(key)!r}"
            )
    planned = approved.rows.select("row", pl.col("request").alias("approved"))
    current = rebuilt.select("row", pl.col("request").alias("now"))
    changed = planned.join(current, on="row", how="full", coalesce=True).filter(
        pl.col("approved").ne_missing(pl.col("now"))
    )
    if changed.height:  # the same request, written otherwise (a polars upgrade): no change
        same = [
            a is not None and b is not None and same_request(a, b)
            for a, b in changed.select("approved", "now").iter_rows()
        ]
        changed = changed.filter(~pl.Series(same, dtype=pl.Boolean))
    for row, before, after in changed.head(5).iter_rows():
        found.append(f"row {row}: approved {before or '(nothing)'}, now {after or '(nothing)'}")
    if changed.height > 5:
        found.append(f"... and {changed.height - 5} more rows")
    return found


__all__ = [
    "RESUMABLE_EXIT_CODES",
    "ApprovalError",
    "acting_user",
    "approve",
    "approved_plan",
    "chain_head",
    "check_plan",
    "check_unapplied",
    "differences",
    "expires_at",
    "export",
    "fingerprint_of",
    "finished_application",
    "job_settings",
    "plan_fields",
    "rebuilt_rows",
    "refuse_forced",
    "reject",
    "skip_unplanned",
    "store",
    "submit",
    "verify",
    "withdraw",
]


def rebuilt_rows(prepared: Prepared) -> pl.DataFrame:
    """Per input row, the request the file and job make now (null for an invalid row)."""
    requests = prepared.plan.rows.join(
        prepared.plan.requests.select(REQUEST_ID, "request"), on=REQUEST_ID, how="left"
    )
    return (
        prepared.validated.select(pl.col(ROW).cast(pl.Int64).alias("row"), ROW)
        .join(requests, on=ROW, how="left")
        .select("row", "request")
    )


def check_plan(prepared: Prepared, approved: ApprovedPlan) -> None:
    """Nothing is sent unless the file and the job make exactly the approved requests."""
    found = differences(approved, prepared.table.sha256, prepared.job, rebuilt_rows(prepared))
    if found:
        raise ApprovalError(
            f"the file or the job differ from approved plan {approved.recorded.run_id}; nothing was "
            "sent: " + "; ".join(found) + ". Fix: restore them, or dry-run again and ask for a "
            "new approval"
        )


def plan_fields(
    job: Job,
    input_sha256: str,
    input_path: Path,
    options: RunOptions,
    run_id: str,
    started: str,
    rows: Callable[[], pl.DataFrame | PlanRows],
) -> PlanFields:
    """A dry run records its plan (``rows()``; manifest: its hash and maker); a run of an
    approved plan names the plan, its hash, its maker and its approver."""
    if options.plan is not None:
        return {
            "plan_run_id": options.plan.recorded.run_id,
            "plan_sha256": options.plan.recorded.plan_sha256,
            "maker": options.plan.recorded.maker,
            "approver": options.plan.approver,
        }
    if not options.dry_run:
        return {}
    settings = job_settings(job)
    header: PlanHeader = {
        "run_id": run_id,
        "maker": acting_user(options.environ or os.environ),
        "created_at": started,
        "input_name": input_path.name,
        "input_path": str(input_path.resolve()),
        "input_sha256": input_sha256,
        "job_fingerprint": fingerprint_of(settings),
        "job_settings": settings,
        "tool_version": __version__,
    }
    with store(job.storage) as audit:
        digest = audit.record_plan(header, rows(), submit=options.submit)
    return {"plan_sha256": digest, "maker": header["maker"]}


def skip_unplanned(outcomes: pl.DataFrame, approved: ApprovedPlan) -> pl.DataFrame:
    """Rows the approved plan did not send (already applied, invalid...) are not sent now."""
    planned = approved.rows.select(pl.col("row").alias(ROW), pl.col("status").alias("__planned"))
    joined = outcomes.join(planned, on=ROW, how="left", maintain_order="left")
    from reconcile.results import skipped_where

    return skipped_where(
        joined,
        pl.col("status").is_null(),
        pl.format("not sent: the approved plan had this row as {}", pl.col("__planned")),
    ).drop("__planned")
