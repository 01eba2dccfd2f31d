"""The console as a finance analyst uses it (issue 30), in the real browser over real HTTP:
a workbook's sheets offered, the job kept after an error and the job a file fits named, xlsx
downloads for xlsx uploads, the planned changes an approver reviews, History paged and
filtered. Workbooks are made by xlsxwriter with number formats and several sheets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import fastexcel
import pytest
import xlsxwriter
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.console_history import seed_runs, seeded_exit, seeded_start
from reconcile.database import Storage
from reconcile.job import load_job
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.web.console import Console
from reconcile.web.fitting import HeldUploads
from reconcile.web.history import Filters, parse_filters
from reconcile.web.security import Signer
from reconcile.web.tables import planned_changes
from reconcile.web.users import UserStore
from tests.console import (
    CHROMIUM,
    PASSWORDS,
    ConsoleParts,
    RunningConsole,
    check_file,
    environ,
    serve,
)
from tests.helpers import write_job
from tests.test_console import _accessible, _page, _sign_in

HEADER = ["Community", "Purchase History ID", "Voucher Code", "Voucher Expiry Date"]


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
    """A console with two jobs of different operations (purchase-history, redemption-status)
    over one ledger: SQLite, then PostgreSQL."""
    storage = Storage(tmp_path / "state", os.environ.get("RECONCILE_LEDGER_URL"))
    jobs = {}
    for name in ("purchase-history", "redemption-status"):
        path = write_job(tmp_path / f"{name}.toml", sandbox.url, operation=name)
        jobs[name] = dataclasses.replace(
            load_job(path), state_dir=storage.state_dir, ledger_url=storage.ledger_url
        )
    console = Console(jobs, storage, environ())
    users = UserStore(storage)
    for user, (role, password) in PASSWORDS.items():
        users.add(user, role, password)
    parts = ConsoleParts(console, users, jobs["purchase-history"], Signer("test-secret-x"))
    yield from serve(parts)
    console.close()
    users.close()


def _workbook(path: Path, sheets: dict[str, list[list[object]]], code_format: bool = True) -> Path:
    """An xlsx as Excel users make it: the voucher code column formatted as text ("@")."""
    with xlsxwriter.Workbook(path, {"strings_to_numbers": False}) as book:
        text = book.add_format({"num_format": "@"})
        for name, rows in sheets.items():
            sheet = book.add_worksheet(name)
            if code_format:
                sheet.set_column(2, 2, 14, text)
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    if isinstance(value, str):  # text as typed, even "=..." (never a formula)
                        sheet.write_string(r, c, value)
                    else:
                        sheet.write(r, c, value)
    return path


def _orders(first: int, count: int) -> list[list[object]]:
    """Rows for generated orders, each with its own zero-padded voucher code (``000456`` ...)."""
    return [
        ["acme", order_id("acme", n), f"{456 + n:06d}", "31/12/2026"]
        for n in range(first, first + count)
    ]


def _check(page: Page, url: str, job: str, path: Path) -> None:
    page.goto(f"{url}/new")
    page.get_by_label("Job").select_option(job)
    page.get_by_label("Correction file").set_input_files(str(path))
    page.get_by_role("button", name="Check file").click()


def _approve(bob: Page, url: str, run_url: str) -> None:
    _sign_in(bob, url, "bob")
    bob.goto(run_url)
    bob.get_by_role("button", name="Approve").click()
    expect(bob.get_by_role("link", name="Download results")).to_be_visible(timeout=30_000)


def test_a_workbook_with_several_sheets_offers_them_and_the_run_uses_the_chosen_one(
    browser: Browser, running: RunningConsole, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """An xlsx with a notes sheet first, then the corrections, then another: the form offers
    the three sheets with the corrections sheet (the first with the job's header) chosen; the
    check reads that sheet (3 rows would apply), and the approved run sends those 3 rows."""
    book = _workbook(
        tmp_path / "December.xlsx",
        {
            "Notes": [["December voucher corrections - APPROVED BY CFO"], ["see the tab"]],
            "Corrections": [HEADER, *_orders(0, 3)],
            "Old": [HEADER, *_orders(10, 5)],
        },
    )
    alice = _page(browser, bypass_csp=True)
    _sign_in(alice, running.url, "alice")
    _check(alice, running.url, "purchase-history", book)
    sheet = alice.get_by_label("Sheet")
    expect(sheet.locator("option")).to_have_text(["Notes", "Corrections", "Old"])
    expect(sheet).to_have_value("Corrections")
    expect(alice.get_by_role("status")).to_contain_text("'December.xlsx' has 3 sheets")
    _accessible(alice, "1b-choose-sheet")
    alice.get_by_role("button", name="Check file").click()
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("3")
    upload = running.console.uploads()[0]
    assert upload.sheet == "Corrections" and upload.original_name == "December.xlsx"
    alice.get_by_role("button", name="Submit for approval").click()
    _approve(_page(browser), running.url, alice.url)
    patched = {
        r["path"].rsplit("/", 1)[-1] for r in sandbox.state.requests if r["method"] == "PATCH"
    }
    assert patched == {order_id("acme", n) for n in range(3)}


def test_choosing_another_sheet_after_an_error_keeps_the_workbook_and_the_choice(
    browser: Browser, running: RunningConsole, tmp_path: Path
) -> None:
    """Checking a sheet without the header says so, keeps the workbook (no new upload) and
    the chosen sheet; choosing the right sheet then checks it."""
    book = _workbook(
        tmp_path / "two.xlsx", {"Summary": [["Total", 3]], "Data": [HEADER, *_orders(0, 2)]}
    )
    alice = _page(browser)
    _sign_in(alice, running.url, "alice")
    _check(alice, running.url, "purchase-history", book)
    alice.get_by_label("Sheet").select_option("Summary")
    alice.get_by_role("button", name="Check file").click()
    expect(alice.get_by_role("alert")).to_contain_text("required column(s) missing")
    expect(alice.get_by_label("Sheet")).to_have_value("Summary")
    expect(alice.get_by_text("Workbook: two.xlsx")).to_be_visible()
    alice.get_by_label("Sheet").select_option("Data")
    alice.get_by_role("button", name="Check file").click()
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("2")


def test_after_an_error_the_job_is_kept_and_the_job_the_file_fits_is_named(
    browser: Browser, running: RunningConsole, tmp_path: Path
) -> None:
    """A purchase-history file checked as redemption-status: the error page keeps
    redemption-status chosen (not the first job), says the file looks like a purchase-history
    file, and names the file as uploaded, never where the server keeps it."""
    source = tmp_path / "Vouchers Dec.csv"
    source.write_text(",".join(HEADER) + "\nacme,ORDTACME00001,000456,31/12/2026\n", "utf-8")
    alice = _page(browser, bypass_csp=True)
    _sign_in(alice, running.url, "alice")
    _check(alice, running.url, "redemption-status", source)
    alert = alice.get_by_role("alert")
    expect(alert).to_contain_text("'Vouchers Dec.csv'")
    expect(alert).to_contain_text("This file looks like a purchase-history file")
    expect(alice.get_by_label("Job")).to_have_value("redemption-status")
    text = alice.content()
    assert "console-files" not in text and str(running.state_dir) not in text
    _accessible(alice, "1c-looks-like-another-job")
    alice.get_by_label("Job").select_option("purchase-history")
    alice.get_by_label("Correction file").set_input_files(str(source))
    alice.get_by_role("button", name="Check file").click()
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("1")


def _cells(path: Path, sheet: str) -> dict[str, list[str | None]]:
    """A workbook's sheet as text columns (fastexcel: string columns stay strings)."""
    frame = fastexcel.read_excel(path.read_bytes()).load_sheet(sheet).to_polars()
    return {c: frame.get_column(c).to_list() for c in frame.columns}


def _has_formula(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(
            b"<f>" in archive.read(n) or b"<f " in archive.read(n)
            for n in archive.namelist()
            if n.startswith("xl/worksheets/")
        )


def test_an_xlsx_upload_downloads_its_errors_and_results_as_workbooks_with_text_kept(
    browser: Browser, running: RunningConsole, tmp_path: Path
) -> None:
    """The errors and results of an xlsx upload download as .xlsx: the zero-padded code
    ``000456`` is a text cell there (it keeps its zeros when opened), a formula-like cell is
    neutralised text ("'=..."), never a formula; a CSV upload's errors stay CSV."""
    rows = [*_orders(0, 2), ["acme", '=HYPERLINK("http://x")', "000789", "31/12/2026"]]
    book = _workbook(tmp_path / "codes.xlsx", {"Sheet1": [HEADER, *rows]})
    alice = _page(browser, bypass_csp=True)
    _sign_in(alice, running.url, "alice")
    _check(alice, running.url, "purchase-history", book)
    link = alice.get_by_role("link", name="Download errors file")
    expect(link).to_have_attribute("href", re.compile(r"/download/errors\.xlsx$"))
    with alice.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "codes.errors.xlsx"
    errors = tmp_path / "errors.xlsx"
    download.value.save_as(errors)
    cells = _cells(errors, "Errors")
    assert cells["Voucher Code"] == ["000789"]
    assert cells["Purchase History ID"] == ['\'=HYPERLINK("http://x")']
    assert not _has_formula(errors)

    alice.get_by_role("button", name="Submit for approval").click()
    _approve(bob := _page(browser), running.url, alice.url)
    with bob.expect_download() as download:
        bob.get_by_role("link", name="Download results").click()
    assert download.value.suggested_filename == "codes.results.xlsx"
    results = tmp_path / "results.xlsx"
    download.value.save_as(results)
    applied = _cells(results, "Results")
    assert applied["Voucher Code"] == ["000456", "000457", "000789"]
    assert applied["status"] == ["applied", "applied", "invalid"]
    assert _cells(results, "Errors")["Voucher Code"] == ["000789"]

    source = tmp_path / "codes.csv"
    source.write_text(",".join(HEADER) + "\nacme,nope,000456,31/12/2026\n", "utf-8")
    _check(alice, running.url, "purchase-history", source)
    expect(alice.get_by_role("link", name="Download errors file")).to_have_attribute(
        "href", re.compile(r"/download/errors\.csv$")
    )


def test_the_plan_lists_its_changes_paged_and_searchable_and_says_what_is_left_out(
    browser: Browser, running: RunningConsole, tmp_path: Path
) -> None:
    """A plan of 120 good rows and 3 invalid ones: its page lists the changes 50 a page
    (which order gets which code), a search finds one order by its ID or by any value and
    shows markup as text; the page and the Submit button say the 3 invalid rows will not be
    sent, and the approver sees the same list."""
    lines = [",".join(HEADER)]
    lines += [f"acme,{order_id('acme', n)},CODE-{n:04d},31/12/2026" for n in range(120)]
    lines += [
        "acme,not-an-id,X,31/12/2026",
        "acme,,Y,31/12/2026",
        "nowhere,ORDTACME00001,Z,1/1/2027",
    ]
    source = tmp_path / "big.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    alice = _page(browser, bypass_csp=True)
    _sign_in(alice, running.url, "alice")
    _check(alice, running.url, "purchase-history", source)
    changes = alice.get_by_role("table", name=re.compile("Rows that will be sent"))
    expect(changes).to_contain_text("page 1 of 3")
    expect(changes.locator("tbody tr")).to_have_count(50)
    expect(changes.locator("tbody tr").first).to_contain_text(order_id("acme", 0))
    expect(changes.locator("tbody tr").first).to_contain_text("CODE-0000")
    section = alice.locator("#changes")
    expect(section).to_contain_text("3 invalid rows will not be sent (rows 122, 123, 124)")
    submit = alice.get_by_role("button", name="Submit for approval")
    expect(submit).to_have_text("Submit for approval (3 invalid rows will not be sent)")
    alice.get_by_role("navigation", name="Planned changes pages").get_by_role(
        "link", name="Next page"
    ).click()
    expect(changes).to_contain_text("page 2 of 3")
    expect(changes.locator("tbody tr").first).to_contain_text(order_id("acme", 50))
    alice.get_by_label("Find an ID or any value").fill("code-0117")
    alice.get_by_role("button", name="Find").click()
    expect(changes.locator("tbody tr")).to_have_count(1)
    expect(changes).to_contain_text(order_id("acme", 117))
    alice.get_by_label("Find an ID or any value").fill("<b>(.*)</b>")
    alice.get_by_role("button", name="Find").click()
    expect(alice.get_by_text("No row that will be sent contains “<b>(.*)</b>”")).to_be_visible()
    assert alice.locator("#changes b").count() == 0
    alice.goto(alice.url.split("?")[0])
    submit.click()

    bob = _page(browser, bypass_csp=True)
    _sign_in(bob, running.url, "bob")
    bob.goto(alice.url)
    expect(bob.locator("#changes")).to_contain_text("120 rows will be sent once approved")
    bob.get_by_label("Find an ID or any value").fill(order_id("acme", 7))
    bob.get_by_role("button", name="Find").click()
    found = bob.get_by_role("table", name=re.compile("Rows that will be sent"))
    expect(found.locator("tbody tr")).to_have_count(1)
    expect(found).to_contain_text("CODE-0007")
    _accessible(bob, "4b-planned-changes")


def test_history_of_10000_runs_is_paged_and_filtered_on_the_server(
    browser: Browser, running: RunningConsole, tmp_path: Path
) -> None:
    """10,000 runs seeded through the ledger's API, beside one console check by alice: History
    shows 50 a page with the total, the next page continues where the first ended, and each
    filter (user, status, date range, job) gives exactly the runs it names, in the page and
    in the count. (Its speed is bench/console_history.py's, not a test's.)"""
    job = running.console.jobs["purchase-history"]
    seed_runs(running.console.storage, job, 10_000)
    source = tmp_path / "mine.csv"
    source.write_text(",".join(HEADER) + "\nacme,ORDTACME00001,A1,31/12/2026\n", "utf-8")
    alice = _page(browser)
    _sign_in(alice, running.url, "alice")
    _check(alice, running.url, "purchase-history", source)
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("1")

    bob = _page(browser, bypass_csp=True)
    _sign_in(bob, running.url, "bob")
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

    bob.goto(f"{running.url}/history")
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

    bob.goto(f"{running.url}/history?job=redemption-status")
    expect(bob.get_by_text("No run matches these filters.")).to_be_visible()
    bob.goto(f"{running.url}/history?job=purchase-history&status=checked&page=2")
    checks = sum(1 for i in range(10_000) if i % 4 == 0)  # dry runs never submitted
    expect(table).to_contain_text(f"{checks} in all, page 2 of {-(-checks // 50)}")


def test_a_submitter_s_history_filters_stay_within_their_own_runs(
    running: RunningConsole, tmp_path: Path
) -> None:
    """Carol (a submitter) filtering History by alice's name sees none of alice's runs; bob
    (an approver) sees alice's check; a filter value with markup comes back as text."""
    source = tmp_path / "a.csv"
    source.write_text(",".join(HEADER) + "\nacme,ORDTACME00002,B2,31/12/2026\n", "utf-8")
    alice = running.client("alice")
    check_file(alice, source)
    carol = running.client("carol").get("/history", params={"user": "alice"}).text
    assert "No run matches these filters." in carol and "a.csv" not in carol
    bob = running.client("bob").get("/history", params={"user": "alice"}).text
    assert "a.csv" in bob and "1 in all" in bob
    odd = running.client("bob").get("/history", params={"user": '"><script>x</script>'}).text
    assert "<script>x" not in odd and "&#34;&gt;&lt;script&gt;x&lt;/script&gt;" in odd


def test_held_workbooks_are_only_their_uploader_s(tmp_path: Path) -> None:
    """A workbook waiting for its sheet is found by its token for the user who uploaded it,
    never for another user or a made-up token, and is gone once dropped (or a day old)."""
    held = HeldUploads(tmp_path / "held")
    token = held.hold("Dec.xlsx", b"PK...", "alice")
    found = held.path(token, "alice")
    assert found is not None and found[0] == "Dec.xlsx" and found[1].read_bytes() == b"PK..."
    assert held.path(token, "carol") is None
    assert held.path("../" + token[3:], "alice") is None
    held.drop(token, "Dec.xlsx")
    assert held.path(token, "alice") is None
    stale = held.hold("Old.xlsx", b"PK...", "alice")
    for path in (tmp_path / "held").iterdir():
        os.utime(path, (1, 1))  # left there since 1970
    fresh = held.hold("New.xlsx", b"PK...", "alice")
    assert held.path(stale, "alice") is None and held.path(fresh, "alice") is not None


def test_planned_changes_search_is_plain_text_and_pages_are_clamped(tmp_path: Path) -> None:
    """The search matches a cell's text, any case, with regex characters taken literally;
    a page past the end shows the last page; invalid rows are listed, others not sent are
    not called invalid."""
    check = tmp_path / "x.check.csv"
    check.write_text(
        "row,Community,Note,status,error\n"
        "2,acme,price (.*) list,would_apply,\n3,acme,Plain,would_apply,\n"
        "4,acme,bad,invalid,oops\n5,acme,done,already_applied,\n",
        encoding="utf-8",
    )
    assert [r[0] for r in planned_changes(check, "(.*)").rows] == ["2"]
    assert [r[0] for r in planned_changes(check, "PLAIN").rows] == ["3"]
    assert planned_changes(check, "a.c").rows == []  # not a pattern
    everything = planned_changes(check, "", page=99)
    assert everything.page == 1 and everything.sending == 2 and everything.invalid == ["4"]
    assert everything.columns == ["row", "Community", "Note"]


def test_history_filters_ignore_what_they_cannot_read() -> None:
    """An unknown status, an impossible date and a bad page number are no filter (page 1)."""
    filters = parse_filters({"status": "drop table", "since": "2026-13-01", "page": "-3"})
    assert filters == Filters()
    kept = parse_filters({"user": " alice ", "until": "2026-10-31", "status": "partial"})
    assert kept.user == "alice" and kept.until == dt.date(2026, 10, 31) and kept.status == "partial"
