"""The console's "Verify now" (issue 31) in a real browser and over real HTTP: an approver reads
back a run the console applied, against the sandbox with a record changed behind the tool; who
may, one at a time, never a dry run, and the audit chain."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from reconcile import approval
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.state import FaultRule
from tests.console import CHROMIUM, RunningConsole, check_file, console_parts, csrf_of, serve
from tests.helpers import write_csv
from tests.test_console import _accessible, _page, _sign_in

JOB = "voucherify-order"
ACME = "64a000000000000000000001"
ORDERS = (
    "community,orderId,status,amount,metadata.tier\n"
    "acme,ord_acme0001,PAID,1500,gold\n"
    "acme,acme-order-2,CANCELED,,silver\n"
    "globex,ord_globex0001,FULFILLED,700,\n"
)


MANY = 105


@pytest.fixture
def seed(seed: dict[str, Any]) -> dict[str, Any]:
    """The shared seed plus MANY more acme orders (ord_many0000 ...)."""
    seed["voucherifyOrders"] += [
        {"id": f"ord_many{n:04d}", "project": ACME, "status": "CREATED", "amount": 100}
        for n in range(MANY)
    ]
    return seed


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def running(
    tmp_path: Path, sandbox: SandboxServer, ledger_backend: str | None
) -> Iterator[RunningConsole]:
    """A console over a Voucherify orders job (a documented read), on each ledger."""
    parts = console_parts(tmp_path, sandbox.url, JOB, verify_settle_seconds=0)
    yield from serve(parts)
    parts.console.close()
    parts.users.close()


def _applied(running: RunningConsole, tmp_path: Path, text: str = ORDERS) -> str:
    """Alice checks and submits an orders file, Bob approves it, the console runs it; the
    plan's run id once the run has finished."""
    alice = running.client("alice")
    plan = check_file(alice, write_csv(tmp_path / "orders.csv", text), job=JOB)
    alice.post(f"/runs/{plan}/submit", data={"csrf_token": csrf_of(alice.get("/new").text)})
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{plan}").text)
    assert bob.post(f"/runs/{plan}/approve", data={"csrf_token": token}).status_code == 303
    deadline = time.monotonic() + 60
    while (found := running.console.background(plan)) is None or found.state == "running":
        assert time.monotonic() < deadline, "the approved run did not end"
        time.sleep(0.05)
    assert found.state == "finished" and found.exit_code == 0, found
    return plan


def _verified(running: RunningConsole, plan: str) -> None:
    deadline = time.monotonic() + 60
    while running.console.verifier.running(plan):
        assert time.monotonic() < deadline, "the verification did not end"
        time.sleep(0.05)


def test_an_approver_verifies_and_sees_the_row_another_writer_changed(
    browser: Browser, running: RunningConsole, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The run page counts the run's own statuses (3 applied), not the file's status column.
    After the run, another system cancels ord_acme0001. Bob clicks "Verify now": the page
    shows 2 verified and 1 mismatch, the mismatching row 2 with "status: wrote PAID, read
    CANCELED", and a verify file to download; the sandbox saw only GETs meanwhile; the
    verification is chained (by bob, from the console), passes audit verify and is in the run's
    report; the page passes
    axe-core. Alice, a submitter, has no button and her POST is 403."""
    plan = _applied(running, tmp_path)
    sandbox.state.other_writer("voucherifyOrders", {"id": "ord_acme0001"}, status="CANCELED")
    before = len(sandbox.state.requests)
    bob = _page(browser, bypass_csp=True)
    _sign_in(bob, running.url, "bob")
    bob.goto(f"{running.url}/runs/{plan}")
    run = bob.get_by_role("region", name="Run", exact=True)
    expect(run.locator(".stat.s-applied .n")).to_have_text("3")  # ours, not the file's status
    expect(bob.get_by_text("Not verified yet")).to_be_visible()
    bob.get_by_role("button", name="Verify now").click()
    wrong = bob.get_by_role("table", name=re.compile("Rows the API does not hold"))
    expect(wrong).to_be_visible(timeout=30_000)
    expect(wrong.locator("tbody tr")).to_have_count(1)
    expect(wrong.locator("tbody th")).to_have_text("2")
    expect(wrong).to_contain_text("status: wrote PAID, read CANCELED")
    section = bob.get_by_role("region", name="Read-back verification")
    expect(section.locator(".stat.s-verified .n")).to_have_text("2")
    expect(section.locator(".stat.s-mismatch .n")).to_have_text("1")
    expect(section).to_contain_text("by bob (console Verify now)")
    _accessible(bob, "9-verification")
    assert {r["method"] for r in sandbox.state.requests[before:]} == {"GET"}
    assert len(sandbox.state.requests) - before == 3  # one read per order

    with bob.expect_download() as download:
        bob.get_by_role("link", name="Download verify file").click()
    assert download.value.suggested_filename == "orders.verify.csv"
    verify_file = pl.read_csv(download.value.path(), infer_schema=False)
    assert verify_file.get_column("orderId").to_list() == [
        "ord_acme0001",
        "acme-order-2",
        "ord_globex0001",
    ]
    assert verify_file.get_column("verify_status").to_list() == ["mismatch", "verified", "verified"]

    background = running.console.background(plan)
    assert background is not None and background.real_run_id is not None
    with approval.store(running.console.storage) as audit:
        [entry] = audit.verifications(background.real_run_id)
        done = [(a["user"], a["action"]) for a in audit.actions(plan)]
    assert entry["by"] == "bob" and entry["source"] == "console Verify now"
    assert entry["counts"] == {"mismatch": 1, "verified": 2} and entry["exit_code"] == 4
    assert ("bob", "verify") in done
    assert approval.verify(running.console.storage) == []
    report = running.client("bob").get(f"/runs/{plan}/download/report").text
    assert "Read-back verification" in report and "status: wrote PAID, read CANCELED" in report

    alice = _page(browser)
    _sign_in(alice, running.url, "alice")
    alice.goto(f"{running.url}/runs/{plan}")
    expect(
        alice.get_by_role("table", name=re.compile("Rows the API does not hold"))
    ).to_be_visible()
    expect(alice.get_by_role("button", name="Verify now")).to_have_count(0)
    client = running.client("alice")
    token = csrf_of(client.get(f"/runs/{plan}").text)
    assert client.post(f"/runs/{plan}/verify", data={"csrf_token": token}).status_code == 403


def test_one_verification_at_a_time_and_never_of_a_dry_run(
    running: RunningConsole, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A plan only checked (a dry run: nothing sent) offers no "Verify now" and its POST is
    409 saying why, sending nothing. Of a run: a second POST while the first verification reads
    is 409 naming who started it; once it has ended another may start. A viewer's POST and a
    POST without the CSRF token are 403. A verify file edited since its record is not served."""
    bob = running.client("bob")
    checked = check_file(running.client("alice"), write_csv(tmp_path / "dry.csv", ORDERS), job=JOB)
    page = bob.get(f"/runs/{checked}").text
    assert "Verify now</button>" not in page
    token = csrf_of(page)
    refused = bob.post(f"/runs/{checked}/verify", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "dry run, nothing was sent" in html.unescape(refused.text)
    assert sandbox.state.requests == []

    plan = _applied(running, tmp_path)
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=1.0, match="/v1/orders")]
    token = csrf_of(bob.get(f"/runs/{plan}").text)
    assert bob.post(f"/runs/{plan}/verify").status_code == 403  # no CSRF token
    viewer = running.client("victor")
    viewer_token = csrf_of(viewer.get(f"/runs/{plan}").text)
    assert viewer.post(f"/runs/{plan}/verify", data={"csrf_token": viewer_token}).status_code == 403
    assert bob.post(f"/runs/{plan}/verify", data={"csrf_token": token}).status_code == 303
    again = bob.post(f"/runs/{plan}/verify", data={"csrf_token": token})
    assert again.status_code == 409
    assert "already running (started by bob" in html.unescape(again.text)
    assert "Reading back what the run wrote" in bob.get(f"/runs/{plan}").text
    _verified(running, plan)
    sandbox.state.faults.rules = []
    page = bob.get(f"/runs/{plan}").text
    assert "the API holds what every row read back says" in page
    assert bob.post(f"/runs/{plan}/verify", data={"csrf_token": token}).status_code == 303
    _verified(running, plan)
    background = running.console.background(plan)
    assert background is not None and background.real_run_id is not None
    with approval.store(running.console.storage) as audit:
        found = audit.verifications(background.real_run_id)
    assert len(found) == 2
    assert bob.get(f"/runs/{plan}/verify/download").status_code == 200
    with Path(found[-1]["verify_file"]).open("a", encoding="utf-8") as edited:
        edited.write("acme,ord_acme0001,PAID,1500,gold,2,verified,\n")
    changed = bob.get(f"/runs/{plan}/verify/download")
    assert changed.status_code == 409 and "has changed or gone" in changed.text


def test_the_page_lists_the_first_100_mismatching_rows_and_counts_the_rest(
    running: RunningConsole, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """105 orders applied, then all cancelled by another writer: the verification finds 105
    mismatches; the run page lists the first 100 (rows 2 to 101) and says "and 5 more", the
    verify file has all 105."""
    text = "community,orderId,status\n" + "".join(
        f"acme,ord_many{n:04d},PAID\n" for n in range(MANY)
    )
    plan = _applied(running, tmp_path, text)
    changed = sandbox.state.other_writer("voucherifyOrders", {"status": "PAID"}, status="CANCELED")
    assert changed == MANY
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{plan}").text)
    assert bob.post(f"/runs/{plan}/verify", data={"csrf_token": token}).status_code == 303
    _verified(running, plan)
    page = bob.get(f"/runs/{plan}").text
    table = page.split('<table class="mismatches">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<th scope="row" class="num">(\d+)</th>', table)
    assert rows == [str(n) for n in range(2, 102)]
    assert table.count("status: wrote PAID, read CANCELED") == 100
    assert "… and 5 more: the verify file has every row." in page
    download = bob.get(f"/runs/{plan}/verify/download")
    assert download.status_code == 200
    verify_file = pl.read_csv(download.content, infer_schema=False)
    assert verify_file.get_column("verify_status").to_list() == ["mismatch"] * MANY


def test_a_verification_that_cannot_read_says_why_without_server_paths(
    running: RunningConsole, tmp_path: Path
) -> None:
    """The stored upload changed after the run (the read-back could not trust it): the
    verification stops, the run page says why naming the file as uploaded (never where the
    server keeps it), the audit log records the stop, and Verify now is offered again."""
    plan = _applied(running, tmp_path)
    upload = running.console.upload(plan)
    assert upload is not None
    upload.stored.write_text(ORDERS + "acme,ord_acme0003,PAID,1,gold\n", encoding="utf-8")
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{plan}").text)
    assert bob.post(f"/runs/{plan}/verify", data={"csrf_token": token}).status_code == 303
    _verified(running, plan)
    page = html.unescape(bob.get(f"/runs/{plan}").text)
    assert "stopped: run " in page and "its input file 'orders.csv' has changed" in page
    assert str(running.console.files) not in page
    assert "Verify now</button>" in page
    with approval.store(running.console.storage) as audit:
        details = [a["detail"] for a in audit.actions(plan) if a["action"] == "verify"]
    assert details[0] == "started" and details[1].startswith("stopped: run ")
