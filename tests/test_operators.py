"""Operators: cron inbox jobs, --community, spreadsheets in and out, notification, the report."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter

from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import orders_csv, read_results, run, write_job


def inbox_job(tmp_path: Path, url: str, **top: Any) -> Path:
    for name in ("inbox", "results", "archive"):
        (tmp_path / name).mkdir(exist_ok=True)
    return write_job(
        tmp_path / "nightly.toml",
        url,
        input="inbox/",
        results_dir="results/",
        archive_dir="archive/",
        settle_seconds=30,
        **top,
    )


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


@pytest.mark.usefixtures("keys_in_env")
class TestInbox:
    def test_picks_up_ready_files_in_name_order_and_archives_them(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        job = inbox_job(tmp_path, sandbox.url)
        b = orders_csv(tmp_path / "inbox" / "b-corrections.csv", [("acme", order_id("acme", 2))])
        a = orders_csv(
            tmp_path / "inbox" / "a-corrections.csv",
            [("acme", order_id("acme", 1)), ("acme", "ORD404")],
        )
        fresh = orders_csv(tmp_path / "inbox" / "c-uploading.csv", [("acme", order_id("acme", 3))])
        for path in (a, b):
            age(path, 600)
        (tmp_path / "inbox" / "notes.md").write_text("not an input")
        age(tmp_path / "inbox" / "notes.md", 600)

        assert run("run", "--job", job) == 1  # a-corrections has a rejected row
        assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [
            "a-corrections.csv",
            "b-corrections.csv",
        ]
        assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == [
            "c-uploading.csv",
            "notes.md",
        ]
        produced = sorted(p.name for p in (tmp_path / "results").glob("*.results.csv"))
        assert [re.sub(r"\d{8}T\d{6}Z", "TIME", n) for n in produced] == [
            "a-corrections.TIME.results.csv",
            "b-corrections.TIME.results.csv",
        ]
        # Name order: a's requests before b's.
        paths = [r["path"].rsplit("/", 1)[1] for r in sandbox.state.requests]
        assert paths.index(order_id("acme", 1)) < paths.index(order_id("acme", 2))
        assert order_id("acme", 3) not in paths
        for name in produced:
            stem = name.removesuffix(".csv")
            assert (tmp_path / "results" / f"{stem}.manifest.json").exists()
            assert (tmp_path / "results" / f"{stem}.report.html").exists()

        # Next night the uploaded file is complete: it runs; nothing applied is sent again.
        age(fresh, 600)
        assert run("run", "--job", job) == 0
        assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["notes.md"]
        assert sum(r["path"].endswith(order_id("acme", 1)) for r in sandbox.state.requests) == 1

    def test_empty_inbox_is_fine(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        assert run("run", "--job", inbox_job(tmp_path, sandbox.url)) == 0

    def test_unreadable_file_stays_and_the_others_run(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        job = inbox_job(tmp_path, sandbox.url)
        bad = tmp_path / "inbox" / "a-bad.csv"
        bad.write_text("community,voucherCode\nacme,X\n")
        good = orders_csv(tmp_path / "inbox" / "b-good.csv", [("acme", order_id("acme", 5))])
        age(bad, 600)
        age(good, 600)
        assert run("run", "--job", job) == 2
        assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["a-bad.csv"]
        assert [p.name for p in (tmp_path / "archive").iterdir()] == ["b-good.csv"]

    def test_a_file_with_rows_of_unselected_communities_stays(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """--community acme tonight: globex's rows are not sent, so the file is not archived
        (it would lose them); the next full run sends only what is left."""
        job = inbox_job(tmp_path, sandbox.url)
        rows = [("acme", order_id("acme", 1)), ("globex", order_id("globex", 1))]
        age(orders_csv(tmp_path / "inbox" / "mixed.csv", rows), 600)
        assert run("run", "--job", job, "--community", "acme") == 0
        assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["mixed.csv"]
        assert not (tmp_path / "archive" / "mixed.csv").exists()
        assert run("run", "--job", job) == 0
        assert [p.name for p in (tmp_path / "archive").iterdir()] == ["mixed.csv"]
        communities = [r["community"] for r in sandbox.state.requests]
        assert sorted(communities) == ["acme", "globex"]  # acme's row was not sent twice

    def test_a_dry_run_or_rehearsal_of_an_inbox_leaves_its_files(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """An auditor previewing tonight's run must not move tonight's files to the archive."""
        job = inbox_job(tmp_path, sandbox.url)
        # An order of the sample seed: the embedded sandbox (--sandbox) has it too.
        age(orders_csv(tmp_path / "inbox" / "a.csv", [("acme", "ORD202641612055614747")]), 600)
        assert run("run", "--job", job, "--dry-run") == 0
        assert run("run", "--job", job, "--sandbox") == 0
        assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["a.csv"]
        assert len(list((tmp_path / "results").glob("a.*.results.csv"))) >= 1
        assert sandbox.state.requests == []
        assert run("run", "--job", job) == 0
        assert [p.name for p in (tmp_path / "archive").iterdir()] == ["a.csv"]
        assert len(sandbox.state.requests) == 1

    def test_two_inputs_of_one_name_in_one_second_keep_their_own_results(
        self, tmp_path: Path
    ) -> None:
        """fixes.csv and fixes.txt run in the same second: the second must not overwrite the
        first one's results."""
        from reconcile.inbox import results_path
        from reconcile.job import load_job

        job = load_job(inbox_job(tmp_path, "https://api.example.invalid"))
        started = dt.datetime(2026, 11, 23, 2, 0, 0, tzinfo=dt.UTC)
        first = results_path(job, tmp_path / "inbox" / "fixes.csv", started)
        first.write_text("results of fixes.csv")
        second = results_path(job, tmp_path / "inbox" / "fixes.txt", started)
        assert first.name == "fixes.20261123T020000Z.results.csv"
        assert second.name == "fixes.20261123T020000Z-2.results.csv"

    def test_a_glob_input(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        job = inbox_job(tmp_path, sandbox.url)
        job.write_text(job.read_text().replace('input = "inbox/"', 'input = "inbox/*-acme.csv"'))
        mine = orders_csv(tmp_path / "inbox" / "x-acme.csv", [("acme", order_id("acme", 6))])
        other = orders_csv(tmp_path / "inbox" / "x-other.csv", [("acme", order_id("acme", 7))])
        age(mine, 600)
        age(other, 600)
        assert run("run", "--job", job) == 0
        assert [p.name for p in (tmp_path / "archive").iterdir()] == ["x-acme.csv"]

    def test_no_input_anywhere_is_a_config_error(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        assert run("run", "--job", write_job(tmp_path / "j.toml", sandbox.url)) == 2


@pytest.mark.usefixtures("keys_in_env")
def test_community_selection(sandbox: SandboxServer, tmp_path: Path) -> None:
    rows = [("acme", order_id("acme", 1)), ("globex", order_id("globex", 1)), ("acme", "bad id!")]
    out = tmp_path / "out.csv"
    source = orders_csv(tmp_path / "in.csv", rows)
    job = write_job(tmp_path / "j.toml", sandbox.url)
    assert run("run", source, "--job", job, "--out", out, "--community", "globex") == 0
    results = read_results(out)
    assert results.get_column("status").to_list() == ["skipped", "applied", "skipped"]
    assert results.get_column("error").to_list()[0] == "not selected (--community)"
    assert {r["community"] for r in sandbox.state.requests} == {"globex"}
    assert run("run", source, "--job", job, "--out", out, "--community", "initech") == 2


def make_workbook(path: Path) -> Path:
    workbook = xlsxwriter.Workbook(path)
    cover = workbook.add_worksheet("Read me")
    cover.write(0, 0, "Corrections are on the next sheet")
    sheet = workbook.add_worksheet("Corrections")
    date = workbook.add_format({"num_format": "mm/dd/yyyy"})  # shown US-style: still a date cell
    sheet.write_row(
        0, 0, ["Community", "Purchase History ID", "Voucher Code", "Voucher Expiry Date", "Note"]
    )
    sheet.write_row(1, 0, ["acme", order_id("acme", 1), "NEW-1"])
    sheet.write_datetime(1, 3, dt.datetime(2027, 3, 1), date)
    sheet.write(1, 4, "date cell")
    sheet.write_row(2, 0, ["acme", order_id("acme", 2), "NEW-2", "01/12/2026", "date as text"])
    sheet.write_row(3, 0, ["acme"])
    sheet.write_number(3, 1, 202641612055614747)
    sheet.write_row(3, 2, ["NEW-3", "01/12/2026", "ID as a number"])
    sheet.write_row(4, 0, ["acme", order_id("acme", 4)])
    sheet.write_number(4, 2, 1234)
    sheet.write_row(4, 3, ["2026-12-31", "ISO date as text"])
    workbook.close()
    return path


@pytest.mark.usefixtures("keys_in_env")
class TestSpreadsheets:
    def test_xlsx_in(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        source = make_workbook(tmp_path / "in.xlsx")
        out = tmp_path / "out.csv"
        job = write_job(tmp_path / "j.toml", sandbox.url)
        assert (
            run("run", source, "--job", job, "--out", out, "--sheet", "Corrections", "--dry-run")
            == 1
        )
        results = read_results(out)
        assert results.get_column("row").to_list() == ["2", "3", "4", "5"]
        assert results.get_column("Voucher Expiry Date").to_list()[:2] == [
            "01/03/2027",
            "01/12/2026",
        ]
        assert results.get_column("status").to_list() == [
            "would_apply",
            "would_apply",
            "invalid",
            "invalid",
        ]
        assert "cell B4 holds the number" in results.get_column("error")[2]
        assert "year first" in results.get_column("error")[3]
        # A voucher code is a string to the API: a number cell may have lost its leading zeros.
        assert "cell C5 holds the number 1234" in results.get_column("error")[3]

    def test_unknown_sheet(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        source = make_workbook(tmp_path / "in.xlsx")
        assert (
            run(
                "run",
                source,
                "--job",
                write_job(tmp_path / "j.toml"),
                "--sheet",
                "Nope",
                "--dry-run",
                "--out",
                tmp_path / "o.csv",
            )
            == 2
        )
        assert "Read me, Corrections" in capsys.readouterr().err

    def test_the_first_sheet_with_a_header_by_default(self, tmp_path: Path) -> None:
        """Without --sheet, the cover sheet (no purchaseHistoryID column) is passed over and the
        Corrections sheet is read, as with --sheet Corrections (issue 30)."""
        source = make_workbook(tmp_path / "in.xlsx")
        code = run(
            "run",
            source,
            "--job",
            write_job(tmp_path / "j.toml"),
            "--dry-run",
            "--out",
            tmp_path / "o.csv",
        )
        assert code == 1  # the Corrections sheet's rows: two valid, two invalid
        assert read_results(tmp_path / "o.csv").get_column("row").to_list() == ["2", "3", "4", "5"]

    def test_xlsx_out_reads_back_with_the_same_values(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        rows = [("acme", order_id("acme", 1)), ("acme", "ORD404"), ("acme", "=1+2")]
        source = orders_csv(tmp_path / "in.csv", rows, instructions="Desk, 2nd floor")
        job = write_job(tmp_path / "j.toml", sandbox.url)
        assert run("run", source, "--job", job, "--out", tmp_path / "out.xlsx") == 1
        sheet = pl.read_excel(tmp_path / "out.xlsx", sheet_name="Results", infer_schema_length=0)
        assert sheet.get_column("purchaseHistoryID").to_list() == [
            order_id("acme", 1),
            "ORD404",
            "=1+2",
        ]
        assert sheet.get_column("status").to_list() == ["applied", "rejected", "invalid"]
        assert sheet.get_column("redemptionInstructions").to_list() == ["Desk, 2nd floor"] * 3
        errors = pl.read_excel(tmp_path / "out.xlsx", sheet_name="Errors", infer_schema_length=0)
        assert errors.get_column("purchaseHistoryID").to_list() == ["ORD404", "=1+2"]
        with zipfile.ZipFile(tmp_path / "out.xlsx") as archive:
            results_sheet = archive.read("xl/worksheets/sheet1.xml").decode()
            table = archive.read("xl/tables/table1.xml").decode()  # polars writes an Excel table
        assert 'state="frozen"' in results_sheet
        assert "<autoFilter" in table
        assert results_sheet.count("<cfRule") >= 3  # the status column coloured by status
        assert "<cols>" in results_sheet  # widths fitted


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 - shared by the handler instances of one test
    status = 204
    delay = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        time.sleep(type(self).delay)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Collector", (_Collector,), {"received": [], "status": 204, "delay": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/t0ken", handler
    server.shutdown()


@pytest.mark.usefixtures("keys_in_env")
class TestNotify:
    def test_summary_is_posted_after_each_run(
        self, sandbox: SandboxServer, tmp_path: Path, collector: tuple[str, type[_Collector]]
    ) -> None:
        url, handler = collector
        source = orders_csv(
            tmp_path / "in.csv", [("acme", order_id("acme", 1)), ("acme", "ORD404")]
        )
        job = write_job(tmp_path / "j.toml", sandbox.url, notify_url=url)
        assert run("run", source, "--job", job, "--out", tmp_path / "out.csv") == 1
        [summary] = handler.received
        manifest = json.loads((tmp_path / "out.manifest.json").read_text())
        assert summary["run_id"] == manifest["run_id"]
        assert summary["counts"]["per_status"] == {"applied": 1, "rejected": 1}
        assert summary["exit_code"] == 1
        assert "sandbox-key-acme" not in json.dumps(summary)

    def test_a_failing_notification_never_fails_the_run(
        self,
        sandbox: SandboxServer,
        tmp_path: Path,
        collector: tuple[str, type[_Collector]],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        url, handler = collector
        handler.status = 500
        source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 1))])
        job = write_job(tmp_path / "j.toml", sandbox.url, notify_url=url)
        assert run("run", source, "--job", job, "--out", tmp_path / "out.csv") == 0
        err = capsys.readouterr().err
        assert "notify.failed" in err and "t0ken" not in err
        job.write_text(job.read_text().replace(url, "http://127.0.0.1:9/closed"))
        assert run("run", source, "--job", job, "--out", tmp_path / "out.csv") == 0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed here (CI installs it)")
    return found


def render(html: Path, *extra: str) -> str:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={html.parent / 'chromium-profile'}",
        *extra,
        html.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def shown_counts(dom: str) -> dict[tuple[str, str], int]:
    """(community, status) -> the number the rendered page shows."""
    counts: dict[tuple[str, str], int] = {}
    for attributes, number in re.findall(r"<td ([^>]*)>(\d+)</td>", dom):
        named = dict(re.findall(r'data-(community|status)="([^"]+)"', attributes))
        if len(named) == 2:
            counts[(named["community"], named["status"])] = int(number)
    return counts


@pytest.mark.usefixtures("keys_in_env")
def test_report_in_the_browser_shows_the_runs_numbers(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.state.faults.rate_per_second = 3
    sandbox.state.faults.burst = 1
    sandbox.state.faults.rules = [FaultRule(kind="error_before", status=503, times=2)]
    rows = [("acme", order_id("acme", n)) for n in range(6)] + [
        ("globex", order_id("globex", 1)),
        ("acme", "ORD404"),
        ("acme", "bad!"),
    ]
    job = write_job(tmp_path / "j.toml", sandbox.url, rate_per_second=20, backoff_base_seconds=0.01)
    out = tmp_path / "out.csv"
    assert run("run", orders_csv(tmp_path / "in.csv", rows), "--job", job, "--out", out) == 1
    html = tmp_path / "out.report.html"
    dom = render(html, "--dump-dom")
    results = read_results(out)
    expected = {(c, s): n for c, s, n in results.group_by("community", "status").len().iter_rows()}
    shown = shown_counts(dom)
    for (community, status), number in expected.items():
        assert shown[(community, status)] == number, (community, status)
    assert shown[("all", "total")] == results.height
    assert "Purchase history not found" in dom  # among the most frequent errors, with its row
    assert 'id="timeline"' in dom and "answered 429" in dom
    limited = sum(r["status"] == 429 for r in sandbox.state.requests)
    assert limited > 0 and f"{limited} answered 429" in dom
    assert "2 retries" in dom or f"{2 + limited} retries" in dom
    screenshot = tmp_path / "report.png"
    render(html, f"--screenshot={screenshot}", "--window-size=1000,1300", "--hide-scrollbars")
    assert screenshot.stat().st_size > 10_000


def test_dry_run_report_has_no_timeline(tmp_path: Path) -> None:
    from tests.helpers import SAMPLE

    out = tmp_path / "out.csv"
    job = SAMPLE.parent / "jobs" / "purchase-history.example.toml"
    run(
        "run",
        SAMPLE / "purchase-history-mistakes.csv",
        "--job",
        job,
        "--out",
        out,
        "--dry-run",
        "--state-dir",
        tmp_path,
    )
    html = (tmp_path / "out.report.html").read_text()
    assert "timeline" not in html and "dry run" in html
    assert "<script" not in html and "http" not in html.split("</style>")[1].split("<body>")[0]


def test_an_inbox_pass_holds_the_lock_between_its_files(
    sandbox: SandboxServer, tmp_path: Path, collector: tuple[str, type[_Collector]]
) -> None:
    """A second cron run started between two files of the first one's pass (here: while the
    first file's notification is slow to answer) exits 2; it never takes or re-runs a file."""
    from tests.test_ledger import start, wait_for

    url, handler = collector
    handler.delay = 4.0
    job = inbox_job(tmp_path, sandbox.url, notify_url=url)
    for name, number in (("a.csv", 1), ("b.csv", 2)):
        age(orders_csv(tmp_path / "inbox" / name, [("acme", order_id("acme", number))]), 600)
    first = start(["run", "--job", job])
    wait_for(lambda: len(handler.received) >= 1)  # a.csv done; b.csv not started
    second = start(["run", "--job", job])
    _, err = second.communicate(timeout=30)
    assert second.returncode == 2
    assert "is in progress" in err.decode()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err.decode()[-2000:]
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == ["a.csv", "b.csv"]
    assert len(handler.received) == 2
    paths = [r["path"] for r in sandbox.state.requests]
    assert len(paths) == len(set(paths)) == 2
