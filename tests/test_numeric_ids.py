"""Identifiers a spreadsheet turned into numbers are never sent (issue 29).

Workbooks written by a real LibreOffice Calc (tests/calc.py: the team's CSV opened with Calc's
defaults in en-GB and en-US profiles and saved as xlsx), run against the sandbox over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconcile.sandbox import SandboxServer
from tests.calc import DATA, LANGUAGES, calc_workbook, soffice
from tests.helpers import read_results, run, write_csv, write_job

FIX = (
    "stored as a number: the spreadsheet may have dropped leading zeros or rewritten it. "
    "Format the column as Text and type the value again"
)

#: Per operation: the damaged cells (row -> the start of its message) and the intact rows
#: (row -> the request the sandbox must receive: method, path with query, JSON body).
CASES: dict[str, dict[str, Any]] = {
    "voucherify-order": {
        "refused": {
            2: "orderId: cell B2 holds the number 456 (Excel shows 456)",
            3: "orderId: cell B3 holds the number 12000 (Excel shows 1.20E+04)",
            4: "orderId: cell B4 holds the number 100000 (Excel shows 1.00E+05)",
            5: "source_id: cell D5 holds the number 99887766 (Excel shows 99887766)",
            6: "metadata.code: cell F6 holds the number 7 (Excel shows 7)",
        },
        "sent": {
            7: (
                "PUT",
                "/v1/orders/ord_acme0003",
                {
                    "status": "PAID",
                    "amount": 2100,
                    "source_id": "src-77",
                    "referrer_id": "ref_9",
                    "metadata": {"code": "L2"},
                },
            )
        },
    },
    "voucherify-rollback": {
        "refused": {
            2: "redemptionId: cell B2 holds the number 789",
            3: "tracking_id: cell D3 holds the number 99887766",
            4: "customer.source_id: cell E4 holds the number 36",
            5: "customer.phone: cell F5 holds the number 7700900123",
        },
        "sent": {
            6: (
                "POST",
                "/v1/redemptions/r_acme0001/rollback?reason=Customer%20returned%20the%20order"
                "&tracking_id=36_bob",
                {"customer": {"source_id": "cust-36", "phone": "+44 7700 900123"}},
            )
        },
    },
    "purchase-history": {
        "refused": {
            2: "voucherCode: cell D2 holds the number 98765",
            3: "purchaseHistoryID: cell B3 holds the number 507000000000000018874368 "
            "(Excel shows 5.07E+23)",
        },
        "sent": {
            4: (
                "PATCH",
                "/v1/purchase-histories/ORD202641612055614748",
                {
                    "redemptionInstructions": "Collect at the kiosk",
                    "voucherCode": "SPRING-2026-0001",
                    "voucherExpiryDate": "31/12/2026",
                },
            )
        },
    },
    "redemption-status": {
        "refused": {2: "transactionId: cell B2 holds the number 42"},
        "sent": {
            3: (
                "PUT",
                "/v1/redemption-transactions/status",
                {
                    "transactionId": "ORD202507013832",
                    "statusId": "695e00020000000000000000",
                    "refundCoins": False,
                },
            ),
            4: (
                "PUT",
                "/v1/redemption-transactions/status",
                {
                    "transactionId": "ORD202507013831",
                    "statusId": "695e00010000000000000000",
                    "refundCoins": False,
                },
            ),
        },
    },
    "capillary-transaction": {
        "refused": {
            2: "identifierValue: cell C2 holds the number 919986000586",
            3: "number: cell F3 holds the number 42",
            4: "lineItems.itemCode: cell I4 holds the number 123",
        },
        "sent": {
            5: (
                "PUT",
                "/v2/transactions?identifierName=email&identifierValue=ann%40example.com",
                {"number": "BILL-2026-0042", "deliveryStatus": "DELIVERED"},
            )
        },
    },
}

#: Per operation: a column a job accepts numbers in, a row of it, and what its request holds.
ACCEPTED = {
    "voucherify-order": ("orderId", 3, "PUT /v1/orders/12000 "),
    "voucherify-rollback": ("customer.source_id", 4, '"source_id":"36"'),
    "purchase-history": ("voucherCode", 2, '"voucherCode":"98765"'),
    "redemption-status": ("transactionId", 2, '"transactionId":"42"'),
    "capillary-transaction": ("identifierValue", 2, "identifierValue=919986000586"),
}


def _results(out: Path) -> dict[int, dict[str, Any]]:
    """Results by row; ``status`` and ``error`` are ours (``reconcile_status`` beside an
    operation's own ``status`` column)."""
    rows = {}
    for row in read_results(out).iter_rows(named=True):
        for name in ("status", "error", "request"):
            row[name] = row.get(f"reconcile_{name}", row.get(name))
        rows[int(row.get("reconcile_row") or row["row"])] = row
    return rows


def _sent(sandbox: SandboxServer) -> list[tuple[str, str, Any]]:
    found = []
    for entry in sandbox.state.requests:
        path = entry["raw_path"] + (f"?{entry['query']}" if entry.get("query") else "")
        found.append((entry["method"], path, json.loads(entry["body"] or "null")))
    return found


@pytest.mark.usefixtures("keys_in_env")
@pytest.mark.parametrize("language", list(LANGUAGES))
@pytest.mark.parametrize("operation", list(CASES))
def test_damaged_identifiers_are_refused_and_intact_rows_sent_as_written(
    sandbox: SandboxServer, tmp_path: Path, operation: str, language: str
) -> None:
    """A file Calc saved: each ID it turned into a number is refused, naming the cell, what it
    holds, what Excel shows and the fix; every other row reaches the API exactly as typed."""
    source = calc_workbook(operation, tmp_path, language)
    job = write_job(tmp_path / "job.toml", sandbox.url, operation=operation)
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out) == 1
    rows = _results(out)
    case = CASES[operation]
    for number, start in case["refused"].items():
        assert rows[number]["status"] == "invalid", rows[number]
        assert str(rows[number]["error"]).startswith(start), rows[number]["error"]
        assert FIX in str(rows[number]["error"])
    for number in case["sent"]:
        assert rows[number]["status"] == "applied", rows[number]
    assert sorted(_sent(sandbox), key=str) == sorted(case["sent"].values(), key=str)


@pytest.mark.parametrize("operation", list(ACCEPTED))
def test_a_job_accepts_numeric_ids_in_the_columns_it_names(tmp_path: Path, operation: str) -> None:
    """``[numeric_ids] column = "accept"``: that column's whole-number cells are its IDs, sent
    as their digits; the other columns' numbers are still refused."""
    column, number, request = ACCEPTED[operation]
    source = calc_workbook(operation, tmp_path)
    job = write_job(tmp_path / "job.toml", operation=operation)
    job.write_text(job.read_text() + f'\n[numeric_ids]\n"{column}" = "accept"\n')
    out = tmp_path / "out.csv"
    run("run", source, "--job", job, "--out", out, "--dry-run")
    rows = _results(out)
    assert rows[number]["status"] == "would_apply", rows[number]["error"]
    assert request in str(rows[number]["request"])
    refused = [n for n in CASES[operation]["refused"] if n != number]
    others = [n for n in refused if not CASES[operation]["refused"][n].startswith(f"{column}:")]
    assert all(rows[n]["status"] == "invalid" for n in others)


@pytest.mark.usefixtures("keys_in_env")
@pytest.mark.parametrize("language", list(LANGUAGES))
def test_a_column_of_codes_formatted_000000_is_sent_as_excel_shows_it(
    sandbox: SandboxServer, tmp_path: Path, language: str
) -> None:
    """98765 in a cell formatted 000000 (saved by Calc) is the code 098765 that Excel shows,
    and is sent as that; a text cell in the same column is sent as typed."""
    source = calc_workbook("padded", tmp_path, language)
    job = write_job(tmp_path / "job.toml", sandbox.url, operation="purchase-history")
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out) == 0
    codes = {json.loads(r["body"])["voucherCode"] for r in sandbox.state.requests}
    assert codes == {"098765", "004567", "000123"}


def test_a_csv_id_in_e_notation_or_with_a_trailing_zero_is_refused(tmp_path: Path) -> None:
    """In a CSV, 1E5, 1.2E+18 and 456.0 in an ID column are numbers a spreadsheet wrote: each
    row is refused with the fix, and the errors file keeps the cell as it was."""
    job = write_job(tmp_path / "job.toml", operation="voucherify-order")
    source = write_csv(
        tmp_path / "in.csv",
        "community,orderId,source_id,status\n"
        "acme,1E5,,PAID\nacme,ord_1,1.2E+18,PAID\nacme,ord_2,456.0,PAID\nacme,ord_3,0456,PAID\n",
    )
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 1
    rows = list(_results(out).values())
    assert [r["status"] for r in rows] == ["invalid", "invalid", "invalid", "would_apply"]
    assert "orderId: '1E5' is the number 100000 written in E-notation" in str(rows[0]["error"])
    assert "source_id: '1.2E+18' is the number" in str(rows[1]["error"])
    assert "source_id: '456.0' is the number 456 written with a trailing .0" in str(
        rows[2]["error"]
    )
    assert all(FIX in str(r["error"]) for r in rows[:3])
    errors = read_results(tmp_path / "out.errors.csv")
    assert errors.get_column("orderId").to_list() == ["1E5", "ord_1", "ord_2"]
    assert errors.get_column("source_id").to_list()[1:] == ["1.2E+18", "456.0"]


def test_an_unknown_numeric_ids_column_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in [numeric_ids] (or a column that is not an ID) is refused before anything is
    read, naming the ID columns."""
    job = write_job(tmp_path / "job.toml", operation="voucherify-order")
    job.write_text(job.read_text() + '\n[numeric_ids]\namount = "accept"\n')
    source = write_csv(tmp_path / "in.csv", "community,orderId,status\nacme,ord_1,PAID\n")
    assert run("run", source, "--job", job, "--out", tmp_path / "o.csv", "--dry-run") == 2
    assert "'amount' is not an ID column of voucherify-order" in capsys.readouterr().err


@pytest.mark.skipif(
    soffice() is None, reason="LibreOffice is not installed: the saved copies are used"
)
@pytest.mark.parametrize("language", list(LANGUAGES))
def test_the_saved_copies_are_what_calc_writes(tmp_path: Path, language: str) -> None:
    """tests/data/calc/*.xlsx (read where LibreOffice is not installed) hold the very cells,
    types and formats this LibreOffice writes for the same sources."""
    import fastexcel

    from reconcile import cell_formats

    for name in (*CASES, "padded"):
        fresh = calc_workbook(name, tmp_path / name, language)
        kept = DATA / f"{name}.{language}.xlsx"
        for dtypes in ("string", "boolean"):
            read = [
                fastexcel.read_excel(p).load_sheet(0, dtypes=dtypes).to_polars()  # type: ignore[arg-type]
                for p in (fresh, kept)
            ]
            assert read[0].equals(read[1]), name
        formats = [cell_formats.sheet_formats(p.read_bytes(), 0) for p in (fresh, kept)]
        assert formats[0] == formats[1], name


def test_the_console_shows_a_damaged_id_like_any_bad_cell(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A Calc-saved workbook checked in the console: the run page lists the damaged voucher
    code's row like any bad cell: its column, its value marked, its message (cell, what it
    holds, what Excel shows, the fix)."""
    import html
    import re

    from tests.console import check_file, console_parts, serve

    parts = console_parts(tmp_path, sandbox.url)
    try:
        for running in serve(parts):
            client = running.client("alice")
            source = calc_workbook("purchase-history", tmp_path / "calc")
            run_id = check_file(client, source)
            page = html.unescape(client.get(f"/runs/{run_id}").text)
            row = re.search(r'<th scope="row" class="num">2</th>(.*?)</tr>', page, re.S)
            assert row is not None
            assert re.search(r"<td>voucherCode</td>\s*<td><span class=\"bad-cell\">.*98765", row[1])
            assert "voucherCode: cell D2 holds the number 98765 (Excel shows 98765)" in row[1]
            assert FIX in row[1]
    finally:
        parts.console.close()
        parts.users.close()


def test_a_number_beside_zero_padded_codes_is_refused_even_when_accepted(tmp_path: Path) -> None:
    """Codes shown 098765 (format 000000) say the column's codes have leading zeros: a plain
    number cell beside them (4567) has probably lost its own, so numeric_ids does not accept it;
    the padded code is sent as Excel shows it."""
    import xlsxwriter

    source = tmp_path / "codes.xlsx"
    book = xlsxwriter.Workbook(source)
    sheet = book.add_worksheet()
    padded = book.add_format({"num_format": "000000"})
    sheet.write_row(0, 0, ["community", "purchaseHistoryID", "voucherCode", "voucherExpiryDate"])
    sheet.write_row(1, 0, ["acme", "ORD202641612055614747"])
    sheet.write_number(1, 2, 98765, padded)
    sheet.write_row(2, 0, ["acme", "ORD202641612055614748"])
    sheet.write_number(2, 2, 4567)
    for row in (1, 2):
        sheet.write_string(row, 3, "31/12/2026")
    book.close()
    job = write_job(tmp_path / "job.toml", operation="purchase-history")
    job.write_text(job.read_text() + '\n[numeric_ids]\nvoucherCode = "accept"\n')
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 1
    rows = _results(out)
    assert '"voucherCode":"098765"' in str(rows[2]["request"])
    assert rows[3]["status"] == "invalid"
    assert "voucherCode: cell C3 holds the number 4567" in str(rows[3]["error"])
    assert "numeric_ids" not in str(rows[3]["error"])


def test_a_text_typed_metadata_column_is_accepted_by_its_key(tmp_path: Path) -> None:
    """``metadata.code:text`` is the metadata key ``code``: ``"metadata.code" = "accept"``
    accepts its E-notation values in a CSV, which are refused without it."""
    job = write_job(tmp_path / "job.toml", operation="voucherify-order")
    source = write_csv(
        tmp_path / "in.csv", "community,orderId,metadata.code:text\nacme,ord_1,1E5\n"
    )
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 1
    job.write_text(job.read_text() + '\n[numeric_ids]\n"metadata.code" = "accept"\n')
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 0
    assert '"metadata":{"code":"1E5"}' in str(_results(out)[2]["request"])


def test_excels_long_number_form_gets_one_message(tmp_path: Path) -> None:
    """2.02641E+19 in an ID whose own rules name Excel's damage gets that one message (not two
    for one cause); in an optional ID without such a rule it gets the E-notation message."""
    job = write_job(tmp_path / "job.toml", operation="purchase-history")
    source = write_csv(
        tmp_path / "in.csv",
        "community,purchaseHistoryID,redemptionInstructions\nacme,2.02641E+19,Collect\n",
    )
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 1
    error = str(_results(out)[2]["error"])
    assert "was turned into a number by Excel" in error and "E-notation" not in error
    job = write_job(tmp_path / "job.toml", operation="voucherify-order")
    source = write_csv(tmp_path / "in.csv", "community,orderId,source_id\nacme,ord_1,2.02641E+19\n")
    assert run("run", source, "--job", job, "--out", out, "--dry-run") == 1
    assert "'2.02641E+19' is the number" in str(_results(out)[2]["error"])
