"""The audit store: plans, decisions and the hash chain over them and every run's manifest.

Each chain record carries the hash of the one before it, and each record's fields are all under
its own hash; :meth:`AuditStore.verify` recomputes the chain and checks every stored plan and
decision against its record. The store lives in the ledger's database (SQLite or PostgreSQL).
The rules of who may decide what are in :mod:`reconcile.approval`, which calls this.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypedDict

from reconcile import chain_format
from reconcile.canonical_json import jcs_text
from reconcile.database import Storage, as_storage, open_database
from reconcile.exceptions import ApprovalError, NoteError, PlanStateError
from reconcile.hashing import HASH_FORMAT, RFC_8785, plan_hash, record_hash
from reconcile.json_types import JSONObject, as_object
from reconcile.lazy import pl
from reconcile.ledger import now_iso
from reconcile.plan_store import (
    Decision,
    PlanHeader,
    PlanRows,
    RecordedPlan,
    StandingRecord,
    rows_blob,
    rows_from_blob,
)
from reconcile.run_types import Manifest
from reconcile.schema import create_audit_schema, create_schema

GENESIS = "0" * 64


#: The lock that serialises appends to the chain (PostgreSQL; SQLite has one writer).
CHAIN = "reconcile audit chain"


#: The longest detail of a recorded action (a file name, a note, counts), and of a decision's note.
MAX_DETAIL_CHARS = 500
MAX_NOTE_CHARS = 2000
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ActionRecord(TypedDict):
    """One user action in the chain: who did what, when, with a bounded printable detail."""

    user: str
    action: str
    at: str
    detail: str


def escaped_text(text: str) -> str:
    """``text`` with every control character (line breaks included) written as an escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def canonical(value: object) -> str:
    """The text a store keeps for a value: its RFC 8785 JSON (:mod:`reconcile.canonical_json`)."""
    return jcs_text(value)


class AuditStore:
    """Plans, decisions and the audit chain, in the ledger's database (SQLite or PostgreSQL)."""

    def __init__(self, where: Path | Storage) -> None:
        self.db = open_database(as_storage(where))
        if self.db.dialect == "sqlite":
            create_schema(self.db)  # the ledger's tables too: decide() reads runs
            create_audit_schema(self.db)

    def close(self) -> None:
        self.db.close()

    def head(self) -> str:
        """The chain's head: the hash of its newest record (GENESIS when empty)."""
        last = self.db.one("SELECT hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
        return str(last[0]) if last else GENESIS

    def _append(self, kind: str, run_id: str, record: object) -> str:
        """Chain one record; called inside ``db.transaction(lock=CHAIN)``, so appends from
        several processes (or hosts) go one at a time and the chain never forks."""
        last = self.db.one(
            "SELECT kind, run_id, record, prev_hash, hash FROM audit_chain ORDER BY seq DESC "
            "LIMIT 1"
        )
        previous = str(last[4]) if last else GENESIS
        if not chain_format.is_canonical_head(last):
            format_record = chain_format.format_record(self.db)
            previous = self._insert(chain_format.FORMAT_KIND, "", format_record, previous)
        return self._insert(kind, run_id, record, previous)

    def _insert(self, kind: str, run_id: str, record: object, previous: str) -> str:
        text = canonical(record)
        digest = record_hash(previous, kind, run_id, json.loads(text))
        self.db.run(
            "INSERT INTO audit_chain (kind, run_id, record, prev_hash, hash) VALUES (?,?,?,?,?)",
            (kind, run_id, text, previous, digest),
        )
        return digest

    # -- plans --------------------------------------------------------------------------------

    def record_plan(
        self, header: PlanHeader, rows: pl.DataFrame | PlanRows, *, submit: bool = True
    ) -> str:
        """Store a dry run's plan and chain it; returns its SHA-256. ``submit``: the maker puts
        it before the approvers at once (a command-line dry run); the console's check records
        it unsubmitted, and its maker submits it after looking."""
        header = {**header, HASH_FORMAT: RFC_8785}
        stored: pl.DataFrame | pl.LazyFrame
        hashed: pl.DataFrame | Iterable[pl.DataFrame]
        if isinstance(rows, PlanRows):
            stored, hashed = rows.stored, rows.slices()
        else:
            stored, hashed = rows, rows
        # One after the other, not on two cores: both at once hold two copies of the rows
        # (a million-row plan's peak over the 1 GiB bound, bench/README.md).
        digest = plan_hash(header, hashed)
        value = rows_blob(stored)
        run_id = header["run_id"]
        with self.db.transaction(lock=CHAIN):
            self.db.run(
                "INSERT INTO plans (run_id, header, plan_sha256, rows) VALUES (?,?,?,?)",
                (run_id, canonical(header), digest, value),
            )
            self._append("plan", run_id, {**header, "plan_sha256": digest})
            if submit:
                self._append("submission", run_id, self._stand(run_id, header["maker"], None))
        return digest

    def plan(self, run_id: str) -> RecordedPlan | None:
        found = self.db.one(
            "SELECT run_id, header, plan_sha256 FROM plans WHERE run_id = ?", (run_id,)
        )
        if found is None:
            return None
        decided = self.db.one("SELECT record FROM decisions WHERE run_id = ?", (run_id,))
        header: PlanHeader = json.loads(found[1])
        decision: Decision | None = json.loads(decided[0]) if decided else None
        return RecordedPlan(found[0], header, found[2], decision)

    def plan_rows(self, run_id: str) -> pl.DataFrame:
        found = self.db.one("SELECT rows FROM plans WHERE run_id = ?", (run_id,))
        assert found is not None, f"no plan {run_id}"
        return rows_from_blob(bytes(found[0]))

    def latest_plan_for(self, input_sha256: str, job_fingerprint: str) -> RecordedPlan | None:
        """The newest plan of this file under this job (the inbox's approval flow)."""
        rows = self.db.rows("SELECT run_id, header FROM plans")
        matching = [
            (json.loads(h)["created_at"], run_id)
            for run_id, h in rows
            if json.loads(h)["input_sha256"] == input_sha256
            and json.loads(h)["job_fingerprint"] == job_fingerprint
        ]
        return self.plan(max(matching)[1]) if matching else None

    # -- submission and withdrawal --------------------------------------------------------------

    @staticmethod
    def _stand(run_id: str, user: str, note: str | None) -> StandingRecord:
        return {"run_id": run_id, "by": user, "at": now_iso(), "note": note}

    def standing(self, run_id: str) -> tuple[str, StandingRecord] | None:
        """The plan's last submission or withdrawal (``("submission" | "withdrawal",
        record)``); None: never submitted."""
        found = self.db.one(
            "SELECT kind, record FROM audit_chain WHERE run_id = ? AND kind IN "
            "('submission', 'withdrawal') ORDER BY seq DESC LIMIT 1",
            (run_id,),
        )
        if found is None:
            return None
        record: StandingRecord = json.loads(found[1])
        return str(found[0]), record

    def submit(self, run_id: str, user: str) -> StandingRecord:
        """The maker puts an undecided plan before the approvers (idempotent)."""
        plan = self._undecided(run_id, user, "submit")
        with self.db.transaction(lock=CHAIN):
            standing = self.standing(run_id)
            if standing is not None:
                self._refuse_withdrawn(run_id, standing)
                return standing[1]
            record = self._stand(run_id, plan.maker, None)
            self._append("submission", run_id, record)
        return record

    def withdraw(self, run_id: str, user: str, note: str | None = None) -> StandingRecord:
        """The maker takes a submitted plan back before anyone decided it; final: nobody can
        approve it after (dry-run the file again for a new plan)."""
        self._undecided(run_id, user, "withdraw")
        _check_note(note)
        with self.db.transaction(lock=CHAIN):
            standing = self.standing(run_id)
            if standing is None:
                raise PlanStateError(
                    f"plan {run_id} was never submitted: there is nothing to withdraw"
                )
            self._refuse_withdrawn(run_id, standing)
            current = self.plan(run_id)
            if current is not None and current.decision is not None:
                raise PlanStateError(f"plan {run_id} was decided meanwhile: too late to withdraw")
            record = self._stand(run_id, user, note)
            self._append("withdrawal", run_id, record)
        return record

    def _undecided(self, run_id: str, user: str, verb: str) -> RecordedPlan:
        plan = self.plan(run_id)
        if plan is None:
            raise ApprovalError(f"no plan {run_id!r}. Fix: check the id with 'reconcile runs'")
        if user != plan.maker:
            raise ApprovalError(
                f"only {plan.maker}, who made plan {run_id}, can {verb} it (not {user})"
            )
        if plan.decision is not None:
            raise PlanStateError(
                f"plan {run_id} was already {plan.decision['decision']} by "
                f"{plan.decision['decided_by']}: there is nothing to {verb}"
            )
        return plan

    @staticmethod
    def _refuse_withdrawn(run_id: str, standing: tuple[str, StandingRecord]) -> None:
        kind, record = standing
        if kind == "withdrawal":
            raise PlanStateError(
                f"plan {run_id} was withdrawn by {record['by']} at {record['at']}: it cannot "
                "be submitted or decided. Fix: dry-run the file again for a new plan"
            )

    # -- decisions ----------------------------------------------------------------------------

    def decide(self, run_id: str, *, approve: bool, user: str, note: str | None) -> Decision:
        """Approve or reject a plan. Refused (ApprovalError, nothing recorded): an unknown run,
        a run that is not a dry run, the maker deciding their own; PlanStateError: a plan never
        submitted, withdrawn or already decided."""
        plan = self.plan(run_id)
        if plan is None:
            real = self.db.one("SELECT dry_run FROM runs WHERE run_id = ?", (run_id,))
            if real is not None and not real[0]:
                raise ApprovalError(
                    f"run {run_id} is a real run, not a dry run: only a dry run's plan can be "
                    "approved. Fix: dry-run the file (reconcile run FILE --job JOB --dry-run) "
                    "and approve that run id"
                )
            raise ApprovalError(
                f"no plan {run_id!r} in this state dir. Fix: check the id with "
                "'reconcile runs', and give --job or --state-dir of the job that made it"
            )
        if user == plan.maker:
            raise ApprovalError(
                f"{user} made plan {run_id}: the person who prepares a batch cannot "
                f"{'approve' if approve else 'reject'} it. Fix: ask a colleague to decide it"
            )
        _check_note(note)
        with self.db.transaction(lock=CHAIN):
            # Read under the chain's lock: a withdrawal or another decision cannot slip between.
            record = self._decision(run_id, approve=approve, user=user, note=note)
            self.db.run(
                "INSERT INTO decisions (run_id, record) VALUES (?,?)", (run_id, canonical(record))
            )
            self._append("approval" if approve else "rejection", run_id, record)
        return record

    def _decision(self, run_id: str, *, approve: bool, user: str, note: str | None) -> Decision:
        """The decision record, if the plan stands submitted and undecided."""
        plan = self.plan(run_id)
        assert plan is not None
        if plan.decision is not None:
            raise PlanStateError(
                f"plan {run_id} was already {plan.decision['decision']} by "
                f"{plan.decision['decided_by']} at {plan.decision['decided_at']}: a decision is "
                "final. Fix: dry-run the file again for a new plan"
            )
        standing = self.standing(run_id)
        if standing is None:
            raise PlanStateError(
                f"plan {run_id} was never submitted for approval: {plan.maker} may still be "
                "fixing the file. Nothing was recorded. Fix: wait until its maker submits it"
            )
        self._refuse_withdrawn(run_id, standing)
        return {
            "run_id": run_id,
            "decision": "approved" if approve else "rejected",
            "decided_by": user,
            "decided_at": now_iso(),
            "note": note,
            "plan_sha256": plan.plan_sha256,
        }

    # -- manifests ----------------------------------------------------------------------------

    def record_manifest(self, manifest: Manifest) -> str:
        """Chain a run's manifest; returns the chain's head after it (the manifest's hash)."""
        with self.db.transaction(lock=CHAIN):
            return self._append("manifest", manifest["run_id"], manifest)

    def manifest(self, run_id: str) -> Manifest | None:
        """The run's manifest as chained when it ended (None: not ended, or not recorded)."""
        found = self.db.one(
            "SELECT record FROM audit_chain WHERE kind = 'manifest' AND run_id = ? "
            "ORDER BY seq DESC LIMIT 1",
            (run_id,),
        )
        if found is None:
            return None
        manifest: Manifest = json.loads(found[0])
        return manifest

    def applications(self, plan_run_id: str) -> list[Manifest]:
        """The manifests of the real runs that applied plan ``plan_run_id``, oldest first."""
        found = self.db.rows(
            "SELECT record FROM audit_chain WHERE kind = 'manifest' AND record LIKE ? ORDER BY seq",
            (f"%{json.dumps(plan_run_id)}%",),
        )
        # A run's later manifest corrects its earlier one (a run whose end failed: exit 3).
        manifests: list[Manifest] = [json.loads(text) for (text,) in found]
        latest = {m["run_id"]: m for m in manifests}
        return [
            m
            for m in latest.values()
            if m.get("plan_run_id") == plan_run_id and not m.get("dry_run")
        ]

    def chained_manifests(self) -> Iterator[tuple[str, Manifest]]:
        """Every manifest in the chain, in chain order (a run's correction after its first)."""
        for run_id, text in self.db.rows(
            "SELECT run_id, record FROM audit_chain WHERE kind = 'manifest' ORDER BY seq"
        ):
            manifest: Manifest = json.loads(text)
            yield str(run_id), manifest

    # -- user actions (the console) -----------------------------------------------------------

    def record_action(self, run_id: str, user: str, action: str, detail: str = "") -> None:
        """One user action (sign-in, upload, check, submit, approve, reject, run, download),
        with who and when, chained like plans and decisions. Each field is checked first: the
        user and action are short words (ApprovalError otherwise, nothing recorded); the detail
        is bounded (MAX_DETAIL_CHARS) with its control characters written as escapes, so no
        value can draw a line of its own wherever the entries are shown."""
        for field, value, limit in (("user", user, 64), ("action", action, 32)):
            if not value or len(value) > limit or not _PRINTABLE.fullmatch(value):
                raise ApprovalError(f"audit {field} {value[:40]!r}: not a short printable word")
        if len(run_id) > 64 or not _PRINTABLE.fullmatch(run_id or "-"):
            raise ApprovalError(f"audit run id {run_id[:40]!r}: not a run id")
        detail = escaped_text(detail)
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
        record: ActionRecord = {"user": user, "action": action, "at": now_iso(), "detail": detail}
        with self.db.transaction(lock=CHAIN):
            self._append("action", run_id, record)

    def actions(self, run_id: str) -> list[ActionRecord]:
        """The actions recorded for ``run_id``, oldest first."""
        rows = self.db.rows(
            "SELECT record FROM audit_chain WHERE kind = 'action' AND run_id = ? ORDER BY seq",
            (run_id,),
        )
        actions: list[ActionRecord] = [json.loads(text) for (text,) in rows]
        return actions

    # -- read-back verifications (reconcile verify, run --verify, the console) ----------------

    def record_verification(self, run_id: str, record: Mapping[str, object]) -> None:
        """One read-back of a run's rows (``run_id`` "" for a file with no run): who, when,
        counts, reads and the SHA-256 of the verify file, chained like the manifests."""
        with self.db.transaction(lock=CHAIN):
            self._append("verification", run_id, dict(record))

    def verifications(self, run_id: str) -> list[JSONObject]:
        """The verifications recorded for ``run_id``, oldest first."""
        rows = self.db.rows(
            "SELECT record FROM audit_chain WHERE kind = 'verification' AND run_id = ? "
            "ORDER BY seq",
            (run_id,),
        )
        return [as_object(json.loads(text)) for (text,) in rows]

    # -- verification and export -------------------------------------------------------------

    def verify(self) -> list[str]:
        """Every problem of the chain and of the stores it covers, first one first."""
        problems: list[str] = []
        previous = GENESIS
        chained_decisions: set[str] = set()
        chained_plans: set[str] = set()
        chain = self.db.rows(
            "SELECT seq, kind, run_id, record, prev_hash, hash FROM audit_chain ORDER BY seq"
        )
        anchors = chain_format.anchors(self.db)
        canonical_form = False  # records before the first format record: the legacy form
        for seq, kind, run_id, text, prev_hash, stored in chain:
            where = f"record #{seq} ({kind} of run {run_id})"
            if prev_hash != previous:
                problems.append(f"{where}: does not follow the record before it (one removed?)")
            record = json.loads(text)
            canonical_form = canonical_form or kind == chain_format.FORMAT_KIND
            link = (kind, run_id, text, prev_hash, stored)
            problem = chain_format.link_problem(where, canonical_form, link, record)
            if problem is not None:
                problems.append(problem)
            previous = stored
            if kind == "plan":
                chained_plans.add(run_id)
                problems += self._check_plan(where, run_id, record, anchors.get(run_id))
            elif kind in ("approval", "rejection"):
                chained_decisions.add(run_id)
                found = self.db.one("SELECT record FROM decisions WHERE run_id = ?", (run_id,))
                if found is None or json.loads(found[0]) != record:
                    problems.append(f"{where}: the stored decision differs or was deleted")
        for (run_id,) in self.db.rows("SELECT run_id FROM decisions"):
            if run_id not in chained_decisions:
                problems.append(f"decision of run {run_id}: not in the audit chain (added)")
        for (run_id,) in self.db.rows("SELECT run_id FROM plans"):
            if run_id not in chained_plans:
                problems.append(f"plan of run {run_id}: not in the audit chain (added)")
        return problems

    def verify_head(self, head: str) -> list[str]:
        """:meth:`verify`, and ``head`` (copied elsewhere earlier) must be a record of this chain:
        a chain rebuilt from a rewritten history verifies on its own but lost the old head."""
        problems = self.verify()
        found = self.db.one("SELECT seq FROM audit_chain WHERE hash = ?", (head,))
        if found is None and head != GENESIS:
            problems.append(
                f"head {head} is not a record of this audit chain: the chain was rewritten or "
                "rebuilt after that head was copied, or the head is of another ledger. Fix: "
                "compare with a backup of the ledger and find who changed it"
            )
        return problems

    def _check_plan(
        self, where: str, run_id: str, record: JSONObject, anchor: str | None
    ) -> list[str]:
        plan = self.plan(run_id)
        if plan is None:
            return [f"{where}: the plan was deleted from the store"]
        header = {k: v for k, v in record.items() if k != "plan_sha256"}
        if plan.header != header or plan.plan_sha256 != record["plan_sha256"]:
            return [f"{where}: the stored plan's header differs from the chained one"]
        rows = self.plan_rows(run_id)
        if not chain_format.plan_matches(header, rows, record["plan_sha256"], anchor):
            return [f"{where}: the stored plan rows do not hash to the approved plan_sha256"]
        return []


def store(where: Path | Storage) -> contextlib.closing[AuditStore]:
    """``with store(...) as audit:`` the audit store, closed at the end of the block."""
    return contextlib.closing(AuditStore(where))


def _check_note(note: str | None) -> None:
    """A note is recorded whole or not at all: over MAX_NOTE_CHARS it is refused (NoteError)."""
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise NoteError(
            f"the note has {len(note):,} characters, over the {MAX_NOTE_CHARS:,} a note may "
            "have; nothing was recorded. Fix: shorten the note and try again"
        )
