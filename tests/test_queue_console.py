"""The console's queue (issue 27): approved plans whose lock is held are queued, run one
after another, say "Queued behind RUN" on their page; a stopped approved run is started again
from its page by an approver, and every row is still sent once."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from reconcile import approval, locks
from reconcile.job import load_job
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.state import FaultRule
from tests.console import (
    RunningConsole,
    accessible,
    check_file,
    console_parts,
    csrf_of,
    new_page,
    serve,
    sign_in_page,
)
from tests.helpers import orders_csv, run, storage_of, write_job
from tests.test_approval import as_user
from tests.test_console_server import _add_users, _client, _server
from tests.test_ledger import wait_for
from tests.test_queue import _actions, _applications, _decided_at, _patches, _rows

__all__ = ["as_user"]  # the fixture, imported for these tests


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
            posted = list(pool.map(_approve, [url] * 4, [bob.cookies] * 4, plans, tokens))
        sent_at, answers = [t for t, _ in posted], [a for _, a in posted]
        assert max(sent_at) - min(sent_at) < 1  # four approvals within a second
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
    # Every approval was recorded while the first run was still sending (on two busy cores the
    # server may take over a second to record four), so each later plan met a held lock.
    decided = sorted(_decided_at(job, plan) for plan in plans)
    ordered = sorted((r[0] for r in runs), key=lambda m: str(m["started_at"]))
    assert decided[-1] < dt.datetime.fromisoformat(str(ordered[0]["ended_at"]))
    for before, after in itertools.pairwise(ordered):  # one after another, never two at once
        assert str(after["started_at"]) >= str(before["ended_at"])


def _approve(
    url: str, cookies: httpx.Cookies, plan: str, token: str
) -> tuple[float, httpx.Response]:
    """Bob's click on Approve: when it was sent, and the answer."""
    with httpx.Client(base_url=url, cookies=cookies, timeout=60) as client:
        sent = time.monotonic()
        return sent, client.post(f"/runs/{plan}/approve", data={"csrf_token": token})


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
    browsing = new_page(browser, bypass_csp=True)  # axe-core is injected as a script
    sign_in_page(browsing, running.url, "bob")
    browsing.goto(f"{running.url}/runs/{plan}")
    accessible(browsing, "run-start-again")
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
    page = new_page(browser, bypass_csp=True)  # axe-core is injected as a script
    sign_in_page(page, running.url, "bob")
    with locks.job_lock(running.job):
        for plan in plans:
            token = csrf_of(bob.get(f"/runs/{plan}").text)
            assert bob.post(f"/runs/{plan}/approve", data={"csrf_token": token}).is_redirect
        page.goto(f"{running.url}/runs/{plans[1]}")
        status = page.locator("#queued")
        expect(status).to_contain_text("Queued behind a run outside this console")
        expect(status).to_contain_text("number 2 in line")
        accessible(page, "run-queued-outside")
    expect(status.get_by_role("link", name=plans[0])).to_be_visible(timeout=20_000)
    accessible(page, "run-queued")
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
