"""Approved work waits, it is never wasted (issue 27): a run whose lock another run holds is
queued (``run --wait``, an inbox pass with ``--wait``) and starts when the lock frees, its
approval never used up by the wait; the console's queue, as pure logic. The console's queued
runs and "Start the run again" are in test_queue_console.py."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

import pytest

from reconcile import approval, locks
from reconcile.job import load_job
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from reconcile.web.queue import RunQueue, Standing
from tests.helpers import orders_csv, run, storage_of, write_job
from tests.test_approval import Switch, as_user, dry_run
from tests.test_ledger import start, wait_for
from tests.test_operators import age, inbox_job

__all__ = ["as_user"]  # the fixture, imported for these tests

__all__ = ["as_user"]  # the fixture, imported for these tests


def _rows(first: int, count: int) -> list[tuple[str, str]]:
    return [("acme", order_id("acme", n)) for n in range(first, first + count)]


def _approved(folder: Path, job: Path, rows: list[tuple[str, str]], as_user: Switch) -> str:
    """Alice dry-runs ``rows`` (in a folder of their own), Bob approves: the plan's run id."""
    folder.mkdir()
    as_user("alice")
    run_id = dry_run(folder, job, orders_csv(folder / "in.csv", rows))
    as_user("bob")
    assert run("approve", run_id, "--job", job) == 0
    return run_id


def _actions(job: Path, run_id: str) -> list[tuple[str, str]]:
    with approval.store(storage_of(job)) as audit:
        return [(a["action"], a["detail"]) for a in audit.actions(run_id)]


def _applications(job: Path, plan_run_id: str) -> list[dict[str, object]]:
    with approval.store(storage_of(job)) as audit:
        return audit.applications(plan_run_id)


def _decided_at(job: Path, plan_run_id: str) -> dt.datetime:
    with approval.store(storage_of(job)) as audit:
        found = audit.plan(plan_run_id)
    assert found is not None and found.decision is not None
    return dt.datetime.fromisoformat(found.decision["decided_at"])


def _patches(sandbox: SandboxServer) -> Counter[str]:
    return Counter(
        r["path"].rsplit("/", 1)[1] for r in sandbox.state.requests if r["method"] == "PATCH"
    )


@pytest.mark.usefixtures("ledger_backend", "keys_in_env")
def test_run_plan_wait_queues_behind_a_running_plan_and_both_apply_once(
    sandbox: SandboxServer,
    tmp_path: Path,
    as_user: Switch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While ``run --plan A`` sends (sandbox latency), ``run --plan B`` exits 2 (refusal in
    the audit chain, its approval not used up), ``--wait --wait-timeout 0.3`` gives up after
    the timeout (exit 2, nothing of B sent), and ``--wait`` queues, starts once A ends and
    applies B: each row of both plans reached the sandbox once, B's sending began after A's
    ended, and B's queueing and start are logged and in the chain."""
    job = write_job(tmp_path / "job.toml", sandbox.url, concurrency=1)
    rows_a, rows_b = _rows(0, 30), _rows(30, 10)
    plan_a = _approved(tmp_path / "a", job, rows_a, as_user)
    plan_b = _approved(tmp_path / "b", job, rows_b, as_user)
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.15)]
    as_user("carol")
    first = start(["run", "--plan", plan_a, "--job", job, "--out", tmp_path / "a.results.csv"])
    wait_for(lambda: len(sandbox.state.requests) >= 1)
    command: list[str | Path] = ["run", "--plan", plan_b, "--job", job]
    command += ["--out", tmp_path / "b.results.csv"]

    capsys.readouterr()
    assert run(*command) == 2
    assert "in progress" in capsys.readouterr().err
    assert run(*command, "--wait", "--wait-timeout", "0.3") == 2
    assert "waited 0 s for the run lock, the most --wait-timeout allows" in capsys.readouterr().err
    assert run(*command, "--wait") == 0
    err = capsys.readouterr().err
    assert first.wait(timeout=60) == 0, first.stderr.read().decode()[-2000:] if first.stderr else ""

    assert '"run.queued"' in err or "run.queued" in err
    sent = _patches(sandbox)
    assert set(sent) == {target for _, target in rows_a + rows_b}
    assert set(sent.values()) == {1}
    (applied_a,), (applied_b,) = _applications(job, plan_a), _applications(job, plan_b)
    assert str(applied_b["started_at"]) >= str(applied_a["ended_at"])
    done = [a for a, _ in _actions(job, plan_b)]
    assert done == ["apply refused", "queued", "apply refused", "queued", "apply started"]
    started = dict(_actions(job, plan_b))["apply started"]
    assert started.startswith("after waiting") and "in the queue" in started


@pytest.mark.usefixtures("keys_in_env")
def test_an_inbox_pass_with_wait_applies_the_approved_file_once_the_lock_frees(
    sandbox: SandboxServer, tmp_path: Path, as_user: Switch
) -> None:
    """``require_approval`` inbox: its approved file's pass fails for a held lock without
    ``--wait`` (exit 2, the file stays, the approval is not used up); with ``--wait`` the pass
    waits for the lock, then applies the file once and archives it."""
    job_path = inbox_job(tmp_path, sandbox.url, require_approval=True)
    source = orders_csv(tmp_path / "inbox" / "fixes.csv", _rows(0, 4))
    age(source, 600)
    as_user("alice")
    assert run("run", "--job", job_path) == 0  # planned, kept
    with approval.store(storage_of(job_path)) as audit:
        (plan,) = [
            r for (r,) in audit.db.rows("SELECT run_id FROM audit_chain WHERE kind = 'plan'")
        ]
    as_user("bob")
    assert run("approve", plan, "--job", job_path) == 0
    job = load_job(job_path)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locks.job_lock(job):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    assert run("run", "--job", job_path) == 2
    assert source.exists() and sandbox.state.requests == []
    threading.Timer(1.0, release.set).start()
    assert run("run", "--job", job_path, "--wait", "--wait-timeout", "30") == 0
    holder.join()
    assert not source.exists() and (tmp_path / "archive" / "fixes.csv").exists()
    sent = _patches(sandbox)
    assert len(sent) == 4 and set(sent.values()) == {1}


def test_the_console_queue_is_first_approved_first_run_per_job() -> None:
    """Pure logic of the console's queue: per job only the earliest waiting run asks for the
    lock; a waiting run stands behind the running run of its job (else of a job with the same
    target), with its place in line; a run of another job and target waits for nobody."""
    queue = RunQueue()
    target, other = ("purchase-history", "http://a"), ("redemption-status", "http://b")
    for plan in ("p1", "p2", "p3"):
        queue.join(plan, "nightly", target)
    queue.join("q1", "copy-of-nightly", target)
    queue.join("r1", "refunds", other)
    assert [queue.first_in_line(p) for p in ("p1", "p2", "p3", "q1", "r1")] == [
        True,
        False,
        False,
        True,
        True,
    ]
    queue.started("p1")
    assert queue.standing("p1") is None and queue.busy("p1")
    assert queue.standing("p3") == Standing("p1", 2)
    assert queue.standing("q1") == Standing("p1", 1)  # another job file, the same target
    assert queue.standing("r1") == Standing(None, 1)  # held outside the console
    queue.left("p1")
    assert not queue.busy("p1") and queue.first_in_line("p2") and not queue.first_in_line("p3")
