"""What the console does, without HTTP: store an upload, check it (a dry run that records a
plan), submit it, decide it, run the approved plan in the background, and list history.

Everything goes through the same Python API, ledger and audit chain as the command line: a
console check is a dry run (``reconcile.run(..., dry_run=True)``) made by the signed-in user, a
console run is ``run --plan``. The console keeps only what the ledger does not know: which
upload a plan came from (its original name, shown, never used as a path) and the background
runs it started, so that a restart can resume them.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

import structlog

from reconcile import api, approval, atomic, run_types
from reconcile.database import (
    CONSOLE_POOL_SIZE,
    Storage,
    as_storage,
    open_database,
    usable_state_dir,
)
from reconcile.exceptions import (
    ApprovalError,
    ConfigError,
    PlanStateError,
    ReconcileError,
    RunLockedError,
)
from reconcile.job import Job
from reconcile.schema import create_audit_schema, create_console_schema, create_schema
from reconcile.table import INPUT_SUFFIXES
from reconcile.web.fitting import HeldUploads, suffix_of
from reconcile.web.history import Filters, HistoryPage, HistoryRun, history_page
from reconcile.web.queue import BackgroundRun, LiveCounts, RunQueue
from reconcile.web.uploads import UPLOAD_COLUMNS, Upload, upload_of
from reconcile.web.users import User, UserStore
from reconcile.web.verifying import Verifier

log = structlog.get_logger("reconcile.web")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Console:
    """The console's jobs, files and background runs over one state dir."""

    def __init__(
        self, jobs: Mapping[str, Job], where: Path | Storage, environ: Mapping[str, str]
    ) -> None:
        storage = as_storage(where)
        self.jobs = dict(jobs)
        self.storage = storage
        self.state_dir = usable_state_dir(storage.state_dir)
        self.files = usable_state_dir(storage.state_dir / "console-files")
        self.held = HeldUploads(usable_state_dir(storage.state_dir / "console-held"))
        self._environ = dict(environ)
        self.db = open_database(storage, pool_size=CONSOLE_POOL_SIZE)
        if self.db.dialect == "sqlite":  # History reads the ledger's and audit's tables too
            create_schema(self.db)
            create_audit_schema(self.db)
            create_console_schema(self.db)
        self.progress = LiveCounts()
        self.queue = RunQueue()
        self._threads: dict[str, threading.Thread] = {}
        self._starting = threading.Lock()
        self._closing = threading.Event()
        self.verifier = Verifier(self, self._as)

    def close(self) -> None:
        """Queued runs stop waiting (they stay queued, started again at the next start); running
        ones get 30 s to end."""
        self._closing.set()
        with self.queue.wake:
            self.queue.wake.notify_all()
        for thread in list(self._threads.values()):
            thread.join(timeout=30)
        self.verifier.close()
        self.db.close()

    # -- files ----------------------------------------------------------------------------------

    def job(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            raise ConfigError(f"no job {name!r} in this console") from None

    def check(
        self, job_name: str, original_name: str, data: bytes, user: User, sheet: str | None = None
    ) -> Upload:
        """Store an upload under a generated name and dry-run it as ``user`` (a workbook's
        ``sheet``, else its first): the plan is recorded with ``user`` as its maker.
        InputError/ConfigError for an unusable file."""
        job = self.job(job_name)
        suffix = suffix_of(original_name)
        if suffix not in INPUT_SUFFIXES:
            raise ConfigError(
                f"{original_name!r} is not a file the console reads "
                f"({', '.join(INPUT_SUFFIXES)}): save it as .csv or .xlsx and upload it again"
            )
        name = secrets.token_hex(16)
        stored = self.files / f"{name}{suffix}"
        atomic.write_bytes(stored, data)
        results = self.files / f"{name}.check.csv"
        try:
            summary = api.run(
                stored,
                job,
                results,
                dry_run=True,
                submit=False,
                environ=self._as(user),
                sheet=sheet,
            )
        except ReconcileError as exc:
            raise type(exc)(self.shown(str(exc), original_name, stored, job)) from None
        upload = Upload(
            summary.run_id, job_name, original_name, stored, results, user.name, _now(), None, sheet
        )
        self.db.run(
            f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", upload.row()
        )
        self.record(job, upload.run_id, user, "upload", f"file {original_name!r}")
        self.record(job, upload.run_id, user, "check", _counts_text(summary.counts))
        return upload

    def shown(self, message: str, name: str, stored: Path, job: Job) -> str:
        """``message`` as the console's user sees it: the file named as it was uploaded, and
        no folder of the server's in it (the state dirs, where uploads and results are kept)."""
        for form in (repr(str(stored)), str(stored)):
            message = message.replace(form, repr(name))
        folders = {self.files, self.state_dir, job.state_dir}
        forms = {str(f) for f in folders} | {str(f.resolve()) for f in folders}
        for folder in sorted(forms - {"", ".", "/"}, key=len, reverse=True):
            message = message.replace(folder + "/", "").replace(folder, "the server's state dir")
        return message

    def upload(self, run_id: str) -> Upload | None:
        found = self.db.rows(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE run_id = ?", (run_id,))
        return upload_of(found[0]) if found else None

    def uploads_of(self, run_ids: list[str]) -> list[Upload]:
        """The uploads of these plans (those the console checked)."""
        if not run_ids:
            return []
        marks = ", ".join("?" for _ in run_ids)
        sql = f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE run_id IN ({marks})"
        return [upload_of(row) for row in self.db.rows(sql, run_ids)]

    def uploads(self) -> list[Upload]:
        return [upload_of(row) for row in self.db.rows(f"SELECT {UPLOAD_COLUMNS} FROM uploads")]

    def submit(self, upload: Upload, user: User) -> None:
        """Put a checked file in the approvers' queue (recorded by the library, which decides
        what may be approved)."""
        if upload.maker != user.name:
            raise ApprovalError("only the person who checked a file can submit it")
        if upload.submitted_at is not None:
            return
        approval.submit(self.job(upload.job).storage, upload.run_id, user=user.name)
        self.db.run("UPDATE uploads SET submitted_at = ? WHERE run_id = ?", (_now(), upload.run_id))
        self.record(self.job(upload.job), upload.run_id, user, "submit")

    def withdraw(self, upload: Upload, user: User) -> None:
        """Take a submitted plan back before a decision: nobody can approve it after."""
        approval.withdraw(self.job(upload.job).storage, upload.run_id, user=user.name)
        self.record(self.job(upload.job), upload.run_id, user, "withdraw")

    # -- decisions and runs --------------------------------------------------------------------

    def decide(self, upload: Upload, user: User, *, approve: bool, note: str | None) -> None:
        """Approve (then run in the background) or reject; ApprovalError when refused (the
        maker, a decided plan): nothing recorded then."""
        job = self.job(upload.job)
        if approve:
            approval.approve(job.storage, upload.run_id, note=note, user=user.name)
            self.record(job, upload.run_id, user, "approve", note or "")
            self.start(upload, user)
        else:
            approval.reject(job.storage, upload.run_id, note=note or "", user=user.name)
            self.record(job, upload.run_id, user, "reject", note or "")

    def start(self, upload: Upload, user: User, resumed: str | None = None) -> None:
        """Run the approved plan of ``upload`` in a background thread, queued (in the order
        started) behind any run that holds its lock."""
        results = self.files / f"{upload.stored.stem}.results.csv"
        self.db.run(
            "INSERT INTO console_runs (plan_run_id, state, started_by, started_at, results, "
            "resumed) VALUES (?,?,?,?,?,?) ON CONFLICT (plan_run_id) DO UPDATE SET "
            "state = excluded.state, resumed = excluded.resumed, started_by = "
            "excluded.started_by, started_at = excluded.started_at, real_run_id = NULL, "
            "exit_code = NULL, error = NULL",
            (upload.run_id, "running", user.name, _now(), str(results), resumed),
        )
        job = self.job(upload.job)
        self.queue.join(upload.run_id, upload.job, (job.operation, job.base_url))
        self.progress.start(upload.run_id)
        thread = threading.Thread(
            target=self._run, args=(upload, user, results), name=f"run-{upload.run_id}"
        )
        self._threads[upload.run_id] = thread
        thread.start()

    def restart(self, upload: Upload, user: User) -> None:
        """An approver starts again an approved plan whose run stopped (a lock, a crash, a
        restart), within the approval's lifetime; the same one-application check as ``run
        --plan`` decides (ApprovalError, recorded, when refused): an interrupted application
        resumes, sending only the rows the ledger does not hold as applied or unknown."""
        job = self.job(upload.job)
        with self._starting:
            try:
                if self.queue.busy(upload.run_id):
                    raise PlanStateError(
                        f"plan {upload.run_id} is queued or running already: it was not started "
                        "a second time"
                    )
                approval.approved_plan(
                    job.storage, upload.run_id, job, dt.datetime.now(dt.UTC), user=user.name
                )
            except ApprovalError as exc:
                log.warning("console.restart_refused", plan=upload.run_id, error=str(exc))
                if "already applied by run" not in str(exc):  # that one is recorded already
                    self.record(job, upload.run_id, user, "apply refused", str(exc))
                raise
            before = self.background(upload.run_id)
            why = (before.error if before else None) or "its run had not started"
            log.info("console.restarted", plan=upload.run_id, user=user.name, after=why)
            self.record(job, upload.run_id, user, "restart", why)
            note = (
                f"started again by {user.name} at {_now()} after it stopped ({why[:200]}); rows "
                "already applied are not sent again"
            )
            self.start(upload, user, resumed=note)

    def _wait(self, upload: Upload, job: Job) -> run_types.Wait:
        """A console run waits in the queue as long as its approval lasts."""
        plan = upload.run_id

        def started(_: float) -> None:
            self.queue.started(plan)
            self._set_state(plan, "running")

        return run_types.Wait(
            timeout_seconds=job.approval_ttl_hours * 3600,
            until="the approval's lifetime (approval_ttl_hours)",
            may_try=lambda: self.queue.first_in_line(plan),
            wake=self.queue.wake,
            on_queued=lambda _: self._set_state(plan, "queued"),
            on_started=started,
            cancel=self._closing,
        )

    def _set_state(self, plan_run_id: str, state: str) -> None:
        self.db.run("UPDATE console_runs SET state = ? WHERE plan_run_id = ?", (state, plan_run_id))

    def _run(self, upload: Upload, user: User, results: Path) -> None:
        try:
            self._apply(upload, user, results)
        finally:
            self.queue.left(upload.run_id)

    def _apply(self, upload: Upload, user: User, results: Path) -> None:
        job = self.job(upload.job)
        self.record(job, upload.run_id, user, "run", "requested")
        state, error, run_id, code = "failed", None, None, None
        try:
            approved = approval.approved_plan(
                job.storage, upload.run_id, job, dt.datetime.now(dt.UTC), user=user.name
            )
            summary = api.run(
                upload.stored,
                job,
                results,
                plan=approved,
                sheet=upload.sheet,
                environ=self._as(user),
                on_progress=lambda community, status: self.progress.add(
                    upload.run_id, community, str(status)
                ),
                wait=self._wait(upload, job),
            )
            state, run_id, code = "finished", summary.run_id, summary.exit_code
            self.record(job, upload.run_id, user, "run", f"ended: {_counts_text(summary.counts)}")
        except ReconcileError as exc:
            if isinstance(exc, RunLockedError) and self._closing.is_set():
                log.info("console.queued_at_stop", plan=upload.run_id)  # the next start runs it
                return
            error = self.shown(str(exc), upload.original_name, upload.stored, job)
            log.warning("console.run_failed", plan=upload.run_id, error=error)
        except Exception as exc:  # a bug or a broken environment: shown, and logged in full
            log.exception("console.run_crashed", plan=upload.run_id)
            error = f"stopped on an unexpected error ({type(exc).__name__}); see the server log"
        self.db.run(
            "UPDATE console_runs SET state = ?, real_run_id = ?, exit_code = ?, error = ? "
            "WHERE plan_run_id = ?",
            (state, run_id, code, error, upload.run_id),
        )

    def background(self, plan_run_id: str) -> BackgroundRun | None:
        row = self.db.one(
            "SELECT plan_run_id, state, started_by, started_at, real_run_id, results, "
            "exit_code, resumed, error FROM console_runs WHERE plan_run_id = ?",
            (plan_run_id,),
        )
        if row is None:
            return None
        return BackgroundRun(
            row[0], row[1], row[2], row[3], row[4], Path(row[5]), row[6], row[7], row[8]
        )

    def resume_unfinished(self, users: UserStore) -> list[str]:
        """Runs the server was running when it stopped: started again, as a CLI run is re-run
        after a crash (the ledger sends nothing twice; a request that may have reached the API
        and must not be repeated ends ``unknown``). Returns their plan ids."""
        rows = self.db.rows(
            "SELECT plan_run_id, started_by FROM console_runs WHERE state IN ('running', "
            "'queued') ORDER BY started_at"
        )
        resumed = []
        for plan_run_id, started_by in rows:
            upload = self.upload(plan_run_id)
            user = users.get(started_by)
            if upload is None or user is None:
                continue
            note = (
                f"the server stopped during this run; it was resumed at {_now()} from the ledger: "
                "rows already applied were not sent again"
            )
            self.start(upload, user, resumed=note)
            resumed.append(plan_run_id)
        return resumed

    # -- history and audit -----------------------------------------------------------------------

    def record(self, job: Job, run_id: str, user: User, action: str, detail: str = "") -> None:
        with approval.store(job.storage) as audit:
            audit.record_action(run_id, user.name, action, detail)

    def history(
        self, filters: Filters | None = None, only_maker: str | None = None
    ) -> list[HistoryRun]:
        """One page of every run of the console's jobs' ledgers (CLI, cron, inbox and console
        alike), newest first, with its maker, approver and status."""
        return self.history_page(filters or Filters(), only_maker).runs

    def history_page(self, filters: Filters, only_maker: str | None = None) -> HistoryPage:
        return history_page(self.jobs, filters, only_maker, (self.storage, self.db))

    def _as(self, user: User) -> dict[str, str]:
        """The environment a run made for ``user`` sees: the server's, with the user named."""
        return {**self._environ, "RECONCILE_USER": user.name}


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in counts.items()) or "no rows"
