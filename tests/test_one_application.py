"""One approval, one application: an approved plan is applied once (a finished application
ends it, ``--force`` never re-sends it), an interrupted one resumes, and only a submitted plan
can be decided (issue 26)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from reconcile import api, approval
from reconcile.job import Job, load_job
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import orders_csv, read_results, run, storage_of, write_job
from tests.test_approval import ROWS, Switch, approved_by_bob, as_user, dry_run
from tests.test_ledger import in_flight_paths, start, wait_for

__all__ = ["as_user"]  # the fixture, imported for these tests

pytestmark = pytest.mark.usefixtures("ledger_backend")


def _actions(job: Path, run_id: str) -> list[tuple[str, str]]:
    with approval.store(storage_of(job)) as audit:
        return [(a["action"], a["detail"]) for a in audit.actions(run_id)]


@pytest.mark.usefixtures("keys_in_env")
class TestOnce:
    @pytest.mark.parametrize("force", [False, True])
    def test_a_second_run_of_an_applied_plan_exits_2_and_sends_nothing(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        as_user: Switch,
        capsys: pytest.CaptureFixture[str],
        force: bool,
    ) -> None:
        """After the plan's run finished (exit 1: one row invalid), ``run --plan`` again, with or
        without --force, exits 2 naming the run that applied it; the sandbox saw each planned
        request once, and the chain records the refusal."""
        job = write_job(tmp_path / "job.toml", sandbox.url)
        run_id = approved_by_bob(tmp_path, job, as_user)
        out = tmp_path / "applied.csv"
        assert run("run", "--plan", run_id, "--job", job, "--out", out) == 1
        first = json.loads((tmp_path / "applied.manifest.json").read_text())["run_id"]
        capsys.readouterr()
        again = ["run", "--plan", run_id, "--job", job, "--out", tmp_path / "again.csv"]
        assert run(*again, *(["--force"] if force else [])) == 2
        err = capsys.readouterr().err
        if force:
            assert "--force with --plan" in err and "new approval" in err
            # And without --force, the finished application is named.
            assert run(*again) == 2
            err = capsys.readouterr().err
        assert f"already applied by run {first}" in err
        paths = [r["raw_path"] for r in sandbox.state.requests]
        assert len(paths) == 2 and len(set(paths)) == 2
        refusals = [d for a, d in _actions(job, run_id) if a == "apply refused"]
        assert refusals and refusals[-1] == f"already applied by run {first}"
        assert not (tmp_path / "again.csv").exists()

    def test_a_plan_run_killed_mid_way_resumes_and_then_is_done(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch
    ) -> None:
        """SIGKILL while the plan's requests are in flight; ``run --plan`` again sends only what
        the ledger does not hold (every row once, bar those in flight at the kill), and a third
        ``run --plan`` is refused: the application has finished."""
        sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.05)]
        rows = [("acme", order_id("acme", n)) for n in range(40)]
        source = orders_csv(tmp_path / "in.csv", rows)
        job = write_job(tmp_path / "job.toml", sandbox.url, rate_per_second=40, concurrency=4)
        run_id = approved_by_bob(tmp_path, job, as_user, source)
        as_user("carol")
        command: list[str | Path] = ["run", "--plan", run_id, "--job", job]
        command += ["--out", tmp_path / "out.csv"]
        process = start(command)
        wait_for(lambda: sum(1 for r in sandbox.state.requests if r.get("committed")) >= 10)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        maybe_twice = {p.rsplit("/", 1)[1] for p in in_flight_paths(tmp_path / "state")}

        resumed = start(command)
        _, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err.decode()[-2000:]
        statuses = set(read_results(tmp_path / "out.csv")["status"])
        assert statuses <= {"applied", "already_applied"}
        sent = Counter(r["path"].rsplit("/", 1)[1] for r in sandbox.state.requests)
        assert set(sent) == {target for _, target in rows}
        for target, count in sent.items():
            assert count == 1 or (count == 2 and target in maybe_twice), (target, count)

        third = start(command)
        _, err = third.communicate(timeout=60)
        assert third.returncode == 2 and b"already applied by run" in err
        assert sum(sent.values()) == len(sandbox.state.requests)

    def test_the_library_refuses_force_with_a_plan(
        self, sandbox: SandboxServer, tmp_path: Path, as_user: Switch
    ) -> None:
        """The Python API (what the console and the inbox call) refuses ``force`` with a plan
        before anything is sent, and records it."""
        job_path = write_job(tmp_path / "job.toml", sandbox.url)
        run_id = approved_by_bob(tmp_path, job_path, as_user)
        job = _job(job_path)
        approved = approval.approved_plan(job.storage, run_id, job, _now())
        with pytest.raises(approval.ApprovalError, match="--force with --plan"):
            api.run(tmp_path / "in.csv", job, tmp_path / "x.csv", plan=approved, force=True)
        assert sandbox.state.requests == []
        assert ("apply refused", "--force with --plan") in _actions(job_path, run_id)


@pytest.mark.usefixtures("keys_in_env")
def test_the_inbox_never_applies_a_plan_twice(
    sandbox: SandboxServer, tmp_path: Path, as_user: Switch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The cron inbox goes through the same check: the approved file is applied and archived;
    the same file dropped in the inbox again is not sent under the old approval (the chain
    records the refusal), it stays there and is planned anew, waiting for a new approval."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = orders_csv(inbox / "fixes.csv", ROWS[:2])
    text = source.read_text(encoding="utf-8")
    job = write_job(
        tmp_path / "job.toml",
        sandbox.url,
        require_approval=True,
        input="inbox",
        results_dir="results",
        archive_dir="archive",
        settle_seconds=0,
    )
    as_user("cron")
    assert run("run", "--job", job) == 0
    with approval.store(storage_of(job)) as audit:
        [(plan_id,)] = audit.db.rows("SELECT run_id FROM plans")
    as_user("bob")
    assert run("approve", plan_id, "--job", job) == 0
    as_user("cron")
    assert run("run", "--job", job) == 0
    assert not source.exists() and len(sandbox.state.requests) == 2
    source.write_text(text, encoding="utf-8")  # the same file, dropped again
    capfd.readouterr()
    assert run("run", "--job", job) == 0
    assert '"event": "inbox.plan_already_applied"' in capfd.readouterr().err
    assert source.exists() and len(sandbox.state.requests) == 2
    assert [a for a, _ in _actions(job, plan_id)].count("apply refused") == 1
    with approval.store(storage_of(job)) as audit:
        plans = [p for (p,) in audit.db.rows("SELECT run_id FROM plans")]
        # Both plans may carry the same second in their ids: the new one is the other one.
        newest = audit.plan(next(p for p in plans if p != plan_id))
    assert len(plans) == 2 and newest is not None and newest.decision is None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _job(path: Path) -> Job:
    """The job as the command line takes it (RECONCILE_LEDGER_URL: the PostgreSQL ledger)."""
    return dataclasses.replace(load_job(path), ledger_url=os.environ.get("RECONCILE_LEDGER_URL"))


class TestSubmitted:
    def test_only_a_submitted_plan_is_decided_and_a_withdrawn_one_never(
        self, tmp_path: Path, as_user: Switch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A plan recorded unsubmitted (as the console's check records it) cannot be approved
        or rejected; once submitted and then withdrawn by its maker, it cannot be approved
        either; each refusal records nothing."""
        job_path = write_job(tmp_path / "job.toml")
        job = _job(job_path)
        as_user("alice")
        source = orders_csv(tmp_path / "in.csv", ROWS)
        summary = api.run(source, job, tmp_path / "p.csv", dry_run=True, submit=False)
        run_id = summary.run_id
        as_user("bob")
        assert run("approve", run_id, "--job", job_path) == 2
        assert "never submitted" in capsys.readouterr().err
        assert run("reject", run_id, "--job", job_path, "--note", "no") == 2
        assert run("withdraw", run_id, "--job", job_path) == 2  # not bob's plan
        as_user("alice")
        approval.submit(job.storage, run_id, user="alice")
        assert run("withdraw", run_id, "--job", job_path) == 0
        as_user("bob")
        assert run("approve", run_id, "--job", job_path) == 2
        assert "withdrawn by alice" in capsys.readouterr().err
        with approval.store(job.storage) as audit:
            plan = audit.plan(run_id)
            kinds = [k for (k,) in audit.db.rows("SELECT kind FROM audit_chain ORDER BY seq")]
            assert audit.verify() == []
        assert plan is not None and plan.decision is None
        assert kinds.count("submission") == 1 and kinds.count("withdrawal") == 1
        assert "approval" not in kinds and "rejection" not in kinds
        with pytest.raises(approval.ApprovalError, match="withdrawn"):
            approval.submit(job.storage, run_id, user="alice")

    def test_a_command_line_dry_run_is_submitted_when_recorded(
        self, tmp_path: Path, as_user: Switch
    ) -> None:
        """The command line's maker puts the plan before the approvers by dry-running it."""
        job = write_job(tmp_path / "job.toml")
        as_user("alice")
        run_id = dry_run(tmp_path, job, orders_csv(tmp_path / "in.csv", ROWS))
        with approval.store(storage_of(job)) as audit:
            standing = audit.standing(run_id)
        assert standing is not None and standing[0] == "submission"
        assert standing[1]["by"] == "alice"
        assert os.environ["RECONCILE_USER"] == "alice"
