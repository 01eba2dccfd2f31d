"""The console as a finance analyst uses it (issue 30), in the real browser over real HTTP:
a workbook's sheets offered, the job kept after an error and the job a file fits named, xlsx
downloads for xlsx uploads, the planned changes an approver reviews (History:
test_console_history.py). Workbooks are made by xlsxwriter with number formats and several
sheets."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import fastexcel
import xlsxwriter
from playwright.sync_api import Browser, Page, expect

from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.web.fitting import HeldUploads
from reconcile.web.tables import planned_changes
from tests.console import HEADER, RunningConsole, check_in
from tests.test_console import _accessible, _page, _sign_in


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


def _approve(bob: Page, url: str, run_url: str) -> None:
    _sign_in(bob, url, "bob")
    bob.goto(run_url)
    bob.get_by_role("button", name="Approve").click()
    expect(bob.get_by_role("link", name="Download results")).to_be_visible(timeout=30_000)


def test_a_workbook_with_several_sheets_offers_them_and_the_run_uses_the_chosen_one(
    chromium: Browser, two_jobs: RunningConsole, sandbox: SandboxServer, tmp_path: Path
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
    alice = _page(chromium, bypass_csp=True)
    _sign_in(alice, two_jobs.url, "alice")
    check_in(alice, two_jobs.url, "purchase-history", book)
    sheet = alice.get_by_label("Sheet")
    expect(sheet.locator("option")).to_have_text(["Notes", "Corrections", "Old"])
    expect(sheet).to_have_value("Corrections")
    expect(alice.get_by_role("status")).to_contain_text("'December.xlsx' has 3 sheets")
    _accessible(alice, "1b-choose-sheet")
    alice.get_by_role("button", name="Check file").click()
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("3")
    upload = two_jobs.console.uploads()[0]
    assert upload.sheet == "Corrections" and upload.original_name == "December.xlsx"
    alice.get_by_role("button", name="Submit for approval").click()
    _approve(_page(chromium), two_jobs.url, alice.url)
    patched = {
        r["path"].rsplit("/", 1)[-1] for r in sandbox.state.requests if r["method"] == "PATCH"
    }
    assert patched == {order_id("acme", n) for n in range(3)}


def test_choosing_another_sheet_after_an_error_keeps_the_workbook_and_the_choice(
    chromium: Browser, two_jobs: RunningConsole, tmp_path: Path
) -> None:
    """Checking a sheet without the header says so, keeps the workbook (no new upload) and
    the chosen sheet; choosing the right sheet then checks it."""
    book = _workbook(
        tmp_path / "two.xlsx", {"Summary": [["Total", 3]], "Data": [HEADER, *_orders(0, 2)]}
    )
    alice = _page(chromium)
    _sign_in(alice, two_jobs.url, "alice")
    check_in(alice, two_jobs.url, "purchase-history", book)
    alice.get_by_label("Sheet").select_option("Summary")
    alice.get_by_role("button", name="Check file").click()
    expect(alice.get_by_role("alert")).to_contain_text("required column(s) missing")
    expect(alice.get_by_label("Sheet")).to_have_value("Summary")
    expect(alice.get_by_text("Workbook: two.xlsx")).to_be_visible()
    alice.get_by_label("Sheet").select_option("Data")
    alice.get_by_role("button", name="Check file").click()
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("2")


def test_after_an_error_the_job_is_kept_and_the_job_the_file_fits_is_named(
    chromium: Browser, two_jobs: RunningConsole, tmp_path: Path
) -> None:
    """A purchase-history file checked as redemption-status: the error page keeps
    redemption-status chosen (not the first job), says the file looks like a purchase-history
    file, and names the file as uploaded, never where the server keeps it."""
    source = tmp_path / "Vouchers Dec.csv"
    source.write_text(",".join(HEADER) + "\nacme,ORDTACME00001,000456,31/12/2026\n", "utf-8")
    alice = _page(chromium, bypass_csp=True)
    _sign_in(alice, two_jobs.url, "alice")
    check_in(alice, two_jobs.url, "redemption-status", source)
    alert = alice.get_by_role("alert")
    expect(alert).to_contain_text("'Vouchers Dec.csv'")
    expect(alert).to_contain_text("This file looks like a purchase-history file")
    expect(alice.get_by_label("Job")).to_have_value("redemption-status")
    text = alice.content()
    assert "console-files" not in text and str(two_jobs.state_dir) not in text
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
    chromium: Browser, two_jobs: RunningConsole, tmp_path: Path
) -> None:
    """The errors and results of an xlsx upload download as .xlsx: the zero-padded code
    ``000456`` is a text cell there (it keeps its zeros when opened), a formula-like cell is
    neutralised text ("'=..."), never a formula; a CSV upload's errors stay CSV."""
    rows = [*_orders(0, 2), ["acme", '=HYPERLINK("http://x")', "000789", "31/12/2026"]]
    book = _workbook(tmp_path / "codes.xlsx", {"Sheet1": [HEADER, *rows]})
    alice = _page(chromium, bypass_csp=True)
    _sign_in(alice, two_jobs.url, "alice")
    check_in(alice, two_jobs.url, "purchase-history", book)
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
    _approve(bob := _page(chromium), two_jobs.url, alice.url)
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
    check_in(alice, two_jobs.url, "purchase-history", source)
    expect(alice.get_by_role("link", name="Download errors file")).to_have_attribute(
        "href", re.compile(r"/download/errors\.csv$")
    )


def test_the_plan_lists_its_changes_paged_and_searchable_and_says_what_is_left_out(
    chromium: Browser, two_jobs: RunningConsole, tmp_path: Path
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
    alice = _page(chromium, bypass_csp=True)
    _sign_in(alice, two_jobs.url, "alice")
    check_in(alice, two_jobs.url, "purchase-history", source)
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

    bob = _page(chromium, bypass_csp=True)
    _sign_in(bob, two_jobs.url, "bob")
    bob.goto(alice.url)
    expect(bob.locator("#changes")).to_contain_text("120 rows will be sent once approved")
    bob.get_by_label("Find an ID or any value").fill(order_id("acme", 7))
    bob.get_by_role("button", name="Find").click()
    found = bob.get_by_role("table", name=re.compile("Rows that will be sent"))
    expect(found.locator("tbody tr")).to_have_count(1)
    expect(found).to_contain_text("CODE-0007")
    _accessible(bob, "4b-planned-changes")


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
