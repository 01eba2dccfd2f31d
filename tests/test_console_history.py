"""The console's History at 10,000 runs (issue 30), in the real browser over real HTTP: paged
and filtered on the server (job, user, status, date range), within a submitter's own runs.
Its speed is measured by bench/console_history.py, never by a test."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from bench.console_history import seed_runs, seeded_exit, seeded_start
from reconcile.web.history import Filters, parse_filters
from tests.console import (
    HEADER,
    RunningConsole,
    check_file,
    check_in,
)
from tests.test_console import _accessible, _page, _sign_in


def test_history_of_10000_runs_is_paged_and_filtered_on_the_server(
    chromium: Browser, two_jobs: RunningConsole, tmp_path: Path
) -> None:
    """10,000 runs seeded through the ledger's API, beside one console check by alice: History
    shows 50 a page with the total, the next page continues where the first ended, and each
    filter (user, status, date range, job) gives exactly the runs it names, in the page and
    in the count. (Its speed is bench/console_history.py's, not a test's.)"""
    job = two_jobs.console.jobs["purchase-history"]
    seed_runs(two_jobs.console.storage, job, 10_000)
    source = tmp_path / "mine.csv"
    source.write_text(",".join(HEADER) + "\nacme,ORDTACME00001,A1,31/12/2026\n", "utf-8")
    alice = _page(chromium)
    _sign_in(alice, two_jobs.url, "alice")
    check_in(alice, two_jobs.url, "purchase-history", source)
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("1")

    bob = _page(chromium, bypass_csp=True)
    _sign_in(bob, two_jobs.url, "bob")
    bob.get_by_role("link", name="History").click()
    table = bob.get_by_role("table", name=re.compile("Runs, newest first"))
    expect(table).to_contain_text("10001 in all, page 1 of 201")
    expect(table.locator("tbody tr")).to_have_count(50)
    expect(table.locator("tbody tr").first).to_contain_text("mine.csv")  # the newest
    expect(table.locator("tbody tr").nth(1)).to_contain_text("corrections-009999.csv")
    _accessible(bob, "7b-history-paged")
    bob.get_by_role("navigation", name="History pages").get_by_role("link", name="Next").click()
    expect(table).to_contain_text("page 2 of 201")
    expect(table.locator("tbody tr").first).to_contain_text("corrections-009950.csv")

    bob.get_by_label("User (maker or approver)").fill("alice")
    bob.get_by_role("button", name="Filter").click()
    expect(table).to_contain_text("1 in all, page 1 of 1")
    expect(table).to_contain_text("mine.csv")

    bob.goto(f"{two_jobs.url}/history")
    bob.get_by_label("Status").select_option("partial")
    bob.get_by_label("Started from").fill("2026-10-01")
    bob.get_by_label("Started until").fill("2026-10-01")
    bob.get_by_role("button", name="Filter").click()
    wanted = [
        i
        for i in range(10_000)
        if seeded_exit(i) == 1 and i % 4 and seeded_start(i).date().isoformat() == "2026-10-01"
    ]
    expect(table).to_contain_text(f"{len(wanted)} in all, page 1 of 1")
    expect(table.locator("tbody tr")).to_have_count(len(wanted))
    expect(table.locator("tbody tr").first).to_contain_text(f"corrections-{wanted[-1]:06d}.csv")
    expect(table).not_to_contain_text("all applied")
    expect(bob.get_by_label("Status")).to_have_value("partial")

    bob.goto(f"{two_jobs.url}/history?job=redemption-status")
    expect(bob.get_by_text("No run matches these filters.")).to_be_visible()
    bob.goto(f"{two_jobs.url}/history?job=purchase-history&status=checked&page=2")
    checks = sum(1 for i in range(10_000) if i % 4 == 0)  # dry runs never submitted
    expect(table).to_contain_text(f"{checks} in all, page 2 of {-(-checks // 50)}")


def test_a_submitter_s_history_filters_stay_within_their_own_runs(
    two_jobs: RunningConsole, tmp_path: Path
) -> None:
    """Carol (a submitter) filtering History by alice's name sees none of alice's runs; bob
    (an approver) sees alice's check; a filter value with markup comes back as text."""
    source = tmp_path / "a.csv"
    source.write_text(",".join(HEADER) + "\nacme,ORDTACME00002,B2,31/12/2026\n", "utf-8")
    alice = two_jobs.client("alice")
    check_file(alice, source)
    carol = two_jobs.client("carol").get("/history", params={"user": "alice"}).text
    assert "No run matches these filters." in carol and "a.csv" not in carol
    bob = two_jobs.client("bob").get("/history", params={"user": "alice"}).text
    assert "a.csv" in bob and "1 in all" in bob
    odd = two_jobs.client("bob").get("/history", params={"user": '"><script>x</script>'}).text
    assert "<script>x" not in odd and "&#34;&gt;&lt;script&gt;x&lt;/script&gt;" in odd


def test_history_filters_ignore_what_they_cannot_read() -> None:
    """An unknown status, an impossible date and a bad page number are no filter (page 1)."""
    filters = parse_filters({"status": "drop table", "since": "2026-13-01", "page": "-3"})
    assert filters == Filters()
    kept = parse_filters({"user": " alice ", "until": "2026-10-31", "status": "partial"})
    assert kept.user == "alice" and kept.until == dt.date(2026, 10, 31) and kept.status == "partial"
