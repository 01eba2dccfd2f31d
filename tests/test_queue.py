"""Approved work waits, it is never wasted (issue 27): a run whose lock another run holds is
queued (``run --wait``, the console) and starts when the lock frees; an approved plan whose
run stopped is started again from its page by an approver, and still applied once."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from reconcile import approval, locks
from reconcile.job import load_job
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.console import RunningConsole, check_file, console_parts, csrf_of, serve
from tests.helpers import orders_csv, run, storage_of, write_job
from tests.test_approval import Switch, as_user, dry_run
from tests.test_console import _accessible, _page, _sign_in, browser
from tests.test_console_server import _add_users, _client, _server
from tests.test_ledger import start, wait_for
from tests.test_operators import age, inbox_job

__all__ = ["as_user", "browser"]  # the fixtures, imported for these tests


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


@pytest.mark.usefixtures("ledger_backend")
def test_four_plans_approved_within_a_second_all_run_one_after_another(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """``reconcile serve``: four plans of one job approved at once (four posts in parallel) all
    run, one after another, never two at once; while waiting, a page says "Queued behind run"
    with a link to the running one; the sandbox saw each row once; the server log has the
    queueing and each start."""
    state = tmp_path / "state"
    _add_users(state)
    job = write_job(
        tmp_path / "purchase-history.toml", sandbox.url, state_dir=str(state), concurrency=1
    )
    with _server("--job", job, "--state-dir", state) as (url, process):
        alice, bob = _client(url, "alice"), _client(url, "bob")
        plans = []
        for n in range(4):
            run_id = check_file(alice, orders_csv(tmp_path / f"part-{n}.csv", _rows(n * 10, 10)))
            token = csrf_of(alice.get(f"/runs/{run_id}").text)
            assert alice.post(f"/runs/{run_id}/submit", data={"csrf_token": token}).is_redirect
            plans.append(run_id)
        sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.2)]
        tokens = [csrf_of(bob.get(f"/runs/{p}").text) for p in plans]
        with ThreadPoolExecutor(4) as pool:  # four approvers' clicks at once
            answers = list(pool.map(_approve, [url] * 4, [bob.cookies] * 4, plans, tokens))
        assert [a.status_code for a in answers] == [303] * 4, [a.text for a in answers]
        waiting, behind = _a_queued_page(bob, plans)
        assert behind in plans and behind != waiting
        for plan in plans:
            _finished(bob, plan)
    log = process.stdout.read() if process.stdout else ""
    assert "run.queued" in log and "run.lock_taken" in log
    sent = _patches(sandbox)
    assert len(sent) == 40 and set(sent.values()) == {1}
    runs = [_applications(job, plan) for plan in plans]
    assert [len(r) for r in runs] == [1, 1, 1, 1]
    decided = sorted(_decided_at(job, plan) for plan in plans)
    assert decided[-1] - decided[0] < dt.timedelta(seconds=1)
    ordered = sorted((r[0] for r in runs), key=lambda m: str(m["started_at"]))
    assert decided[-1] < dt.datetime.fromisoformat(str(ordered[0]["ended_at"]))
    for before, after in itertools.pairwise(ordered):  # one after another, never two at once
        assert str(after["started_at"]) >= str(before["ended_at"])


def _approve(url: str, cookies: httpx.Cookies, plan: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=url, cookies=cookies, timeout=60) as client:
        return client.post(f"/runs/{plan}/approve", data={"csrf_token": token})


def _a_queued_page(client: httpx.Client, plans: list[str]) -> tuple[str, str]:
    """A plan whose page says it is queued behind another (linked): both plans' ids."""
    deadline = time.monotonic() + 30
    while True:
        for plan in plans:
            page = client.get(f"/runs/{plan}").text
            found = re.search(r'Queued behind run <a href="/runs/([\w-]+)">', page)
            if found:
                return plan, found.group(1)
        assert time.monotonic() < deadline, [_run_section(client, p) for p in plans]
        time.sleep(0.05)


def _run_section(client: httpx.Client, plan: str) -> str:
    page = client.get(f"/runs/{plan}").text
    return page[page.find('id="run-title"') : page.find('id="log-title"')]


def _finished(client: httpx.Client, plan: str, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while "Download results" not in (page := client.get(f"/runs/{plan}").text):
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    return page


@pytest.fixture
def running(tmp_path: Path, sandbox: SandboxServer) -> Iterator[RunningConsole]:
    parts = console_parts(tmp_path, sandbox.url)
    yield from serve(parts)
    parts.console.close()
    parts.users.close()


def _checked_and_submitted(running: RunningConsole, tmp_path: Path, rows: int) -> str:
    alice = running.client("alice")
    run_id = check_file(alice, orders_csv(tmp_path / "orders.csv", _rows(0, rows)))
    token = csrf_of(alice.get(f"/runs/{run_id}").text)
    assert alice.post(f"/runs/{run_id}/submit", data={"csrf_token": token}).is_redirect
    return run_id


def _start_again(client: httpx.Client, plan: str) -> httpx.Response:
    page = client.get(f"/runs/{plan}").text
    assert "Start the run again" in page, page
    return client.post(f"/runs/{plan}/start", data={"csrf_token": csrf_of(page)})


@pytest.mark.usefixtures("keys_in_env")
def test_a_plan_whose_run_failed_for_the_lock_is_started_again_from_its_page(
    browser: Browser, running: RunningConsole, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A console plan approved from the command line, whose ``run --plan`` failed for the lock
    (exit 2), is offered "Start the run again" to an approver (not to its submitter); clicked
    in Chromium, it applies every row once; then the offer is gone and a second start (a
    forged post) is refused with 409, nothing sent."""
    plan = _checked_and_submitted(running, tmp_path, 6)
    approval.approve(running.job.storage, plan, user="bob")
    job = load_job(tmp_path / "purchase-history.toml")
    with locks.job_lock(running.job):  # another run of the job holds the lock
        out = tmp_path / "cli.results.csv"
        assert run("run", "--plan", plan, "--job", job.path or "", "--out", out) == 2
    assert sandbox.state.requests == []
    alice, bob = running.client("alice"), running.client("bob")
    assert "Start the run again" not in alice.get(f"/runs/{plan}").text
    browsing = _page(browser, bypass_csp=True)  # axe-core is injected as a script
    _sign_in(browsing, running.url, "bob")
    browsing.goto(f"{running.url}/runs/{plan}")
    _accessible(browsing, "run-start-again")
    browsing.get_by_role("button", name="Start the run again").click()
    expect(browsing.get_by_role("link", name="Download results")).to_be_visible(timeout=60_000)
    expect(browsing.get_by_role("button", name="Start the run again")).to_have_count(0)
    page = bob.get(f"/runs/{plan}").text
    sent = _patches(sandbox)
    assert len(sent) == 6 and set(sent.values()) == {1}
    refused = bob.post(f"/runs/{plan}/start", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 409 and "already applied by run" in refused.text
    assert len(sandbox.state.requests) == 6
    done = [a for a, _ in _actions(tmp_path / "purchase-history.toml", plan)]
    assert done.count("apply refused") == 2  # the lock, then the second start
    assert "restart" in done and "apply started" in done


def test_a_crashed_console_run_is_started_again_and_sends_nothing_twice(
    running: RunningConsole, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """The console's run of an approved plan stops on an unexpected error (its results path is
    a folder); the page says it stopped and offers an approver to start it again; once the
    cause is gone, the restart resumes from the ledger: every row reached the sandbox once."""
    plan = _checked_and_submitted(running, tmp_path, 6)
    upload = running.console.upload(plan)
    assert upload is not None
    blocker = upload.stored.with_name(f"{upload.stored.stem}.results.csv")
    blocker.mkdir()
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{plan}").text)
    assert bob.post(f"/runs/{plan}/approve", data={"csrf_token": token}).is_redirect
    deadline = time.monotonic() + 60
    while "Stopped" not in (page := bob.get(f"/runs/{plan}").text):
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    blocker.rmdir()
    assert _start_again(bob, plan).status_code == 303
    page = _finished(bob, plan)
    assert "started again by bob" in page
    sent = _patches(sandbox)
    assert len(sent) == 6 and set(sent.values()) == {1}
    manifest = json.loads(Path(str(blocker).replace(".csv", ".manifest.json")).read_text())
    assert manifest["exit_code"] == 0


@pytest.mark.usefixtures("keys_in_env")
def test_the_queued_page_links_the_run_ahead_and_turns_into_the_run_by_itself(
    browser: Browser, running: RunningConsole, tmp_path: Path, sandbox: SandboxServer
) -> None:
    """In Chromium: with the lock held outside the console, two approved plans are queued (the
    second "number 2 in line"); once it frees, the second's page says "Queued behind run" with
    a link to the first, passes axe-core, and becomes the finished run's page by itself."""
    alice = running.client("alice")
    plans = []
    for first, count in ((0, 40), (40, 12)):  # the first runs 5 s (0.5 s a request, 4 at once)
        source = orders_csv(tmp_path / f"part-{first}.csv", _rows(first, count))
        plan = check_file(alice, source)
        token = csrf_of(alice.get(f"/runs/{plan}").text)
        assert alice.post(f"/runs/{plan}/submit", data={"csrf_token": token}).is_redirect
        plans.append(plan)
    bob = running.client("bob")
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.5)]
    page = _page(browser, bypass_csp=True)  # axe-core is injected as a script
    _sign_in(page, running.url, "bob")
    with locks.job_lock(running.job):
        for plan in plans:
            token = csrf_of(bob.get(f"/runs/{plan}").text)
            assert bob.post(f"/runs/{plan}/approve", data={"csrf_token": token}).is_redirect
        page.goto(f"{running.url}/runs/{plans[1]}")
        status = page.locator("#queued")
        expect(status).to_contain_text("Queued behind a run outside this console")
        expect(status).to_contain_text("number 2 in line")
        _accessible(page, "run-queued-outside")
    expect(status.get_by_role("link", name=plans[0])).to_be_visible(timeout=20_000)
    _accessible(page, "run-queued")
    expect(page.get_by_role("link", name="Download results")).to_be_visible(timeout=60_000)
    assert len(_patches(sandbox)) == 52


@pytest.mark.usefixtures("ledger_backend")
def test_a_run_queued_when_the_server_stops_runs_at_its_next_start(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """``reconcile serve`` stopped (SIGINT) while an approved plan is queued behind a lock held
    outside it: the server ends at once, not after the wait; started again once the lock is
    free, it runs the plan by itself, every row once."""
    state = tmp_path / "state"
    _add_users(state)
    job_path = write_job(tmp_path / "purchase-history.toml", sandbox.url, state_dir=str(state))
    job = load_job(job_path).with_overrides(ledger_url=storage_of(job_path).ledger_url)
    with _server("--job", job_path, "--state-dir", state) as (url, process):
        alice, bob = _client(url, "alice"), _client(url, "bob")
        plan = check_file(alice, orders_csv(tmp_path / "orders.csv", _rows(0, 5)))
        alice.post(f"/runs/{plan}/submit", data={"csrf_token": csrf_of(alice.get("/new").text)})
        with locks.job_lock(job):
            token = csrf_of(bob.get(f"/runs/{plan}").text)
            assert bob.post(f"/runs/{plan}/approve", data={"csrf_token": token}).is_redirect
            wait_for(lambda: "Queued behind a run outside" in bob.get(f"/runs/{plan}").text)
            stopping = time.monotonic()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) is not None
            assert time.monotonic() - stopping < 10
    assert sandbox.state.requests == []
    with _server("--job", job_path, "--state-dir", state) as (url, _):
        page = _finished(_client(url, "bob"), plan)
        assert "resumed" in page
    sent = _patches(sandbox)
    assert len(sent) == 5 and set(sent.values()) == {1}


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
