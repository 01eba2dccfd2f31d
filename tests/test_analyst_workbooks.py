"""Workbooks as analysts make them (issue 30): title rows above the header, data on a later
sheet, merged header cells, a total row, codes typed into a text column beside numbers.

The workbooks are written with xlsxwriter (number formats, merges, formulas, several sheets),
and where LibreOffice is installed, saved again by a real Calc (tests/calc.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter

from reconcile.intake import sheet_names
from reconcile.sandbox import SandboxServer
from tests.calc import save_with_calc, soffice
from tests.helpers import read_results, run, write_csv, write_job

HEADER = ["community", "purchaseHistoryID", "redemptionInstructions"]


def workbook(path: Path, sheets: dict[str, Sequence[Sequence[Any]]]) -> Path:
    """A workbook with one sheet per entry, each a list of rows (None: an empty cell)."""
    book = xlsxwriter.Workbook(path)
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for number, row in enumerate(rows):
            for column, value in enumerate(row):
                if value is not None:
                    sheet.write(number, column, value)
    book.close()
    return path


def test_sheet_names_lists_a_workbooks_sheets_in_tab_order(tmp_path: Path) -> None:
    """The console's sheet choice: every sheet, in the order of the tabs; none for a CSV."""
    path = workbook(tmp_path / "b.xlsx", {"Cover": [["notes"]], "Data": [HEADER], "Old": []})
    assert sheet_names(path) == ["Cover", "Data", "Old"]
    assert sheet_names(write_csv(tmp_path / "a.csv", ",".join(HEADER) + "\n")) == []


TITLE = "December voucher corrections - APPROVED BY CFO"
ORDERS = [
    ["acme", "ORD202641612055614747", "Collect at the kiosk"],
    ["acme", "ORD202641612055614748", "Collect at the desk"],
]


def _dry_run(tmp_path: Path, source: Path, *flags: str, **job: Any) -> tuple[int, pl.DataFrame]:
    """The CLI's dry run of ``source``: exit code and results."""
    out = tmp_path / "out.csv"
    code = run(
        "run",
        source,
        "--job",
        write_job(tmp_path / "job.toml", **job),
        "--out",
        out,
        "--dry-run",
        *flags,
    )
    return code, read_results(out)


def _events(err: str, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event in the CLI's stderr."""
    found = []
    for line in err.splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            found.append(json.loads(line))
    return [e for e in found if e.get("event") == name]


@pytest.mark.usefixtures("keys_in_env")
def test_a_title_row_above_the_header_is_skipped_and_rows_keep_their_sheet_numbers(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Title in row 1, blank row 2, headers in row 3: the rows are sent to the sandbox, results
    name them rows 4 and 5 as Excel does, and the run says it used header row 3."""
    source = workbook(tmp_path / "cfo.xlsx", {"Sheet1": [[TITLE], [], HEADER, *ORDERS]})
    job = write_job(tmp_path / "job.toml", sandbox.url)
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out) == 0
    results = read_results(out)
    assert results.get_column("row").to_list() == ["4", "5"]
    assert results.get_column("status").to_list() == ["applied", "applied"]
    assert len(sandbox.state.requests) == 2
    (header,) = _events(capsys.readouterr().err, "input.header")
    assert header["header_row"] == 3 and header["sheet"] == "Sheet1"
    assert "header row 3 (rows 1-2 above it are ignored)" in header["message"]


def test_title_lines_above_a_csv_header_are_skipped(tmp_path: Path) -> None:
    """A CSV with a title line (no delimiters) and a blank line above its semicolon header:
    the header is line 3, the error names row 5 as the file shows it."""
    text = f"{TITLE}\n\n" + ";".join(HEADER) + "\nacme;ORD1;a\nacme;;b\n"
    code, results = _dry_run(tmp_path, write_csv(tmp_path / "t.csv", text))
    assert code == 1
    assert results.get_column("row").to_list() == ["4", "5"]
    assert results.get_column("status").to_list() == ["would_apply", "invalid"]


def test_the_data_on_a_later_sheet_is_found_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cover sheet first, the data on 'Data': that sheet is read, and the run says so."""
    sheets = {"Cover": [["Prepared by finance"], ["see next tab"]], "Data": [HEADER, *ORDERS]}
    code, results = _dry_run(tmp_path, workbook(tmp_path / "two.xlsx", sheets))
    assert code == 0 and results.height == 2
    (header,) = _events(capsys.readouterr().err, "input.header")
    assert header["sheet"] == "Data"
    assert "sheet 'Cover' has no header row naming the required columns" in header["message"]


def test_a_template_sheet_with_no_rows_does_not_hide_the_data_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 'Template' sheet holding only the header, then 'December' with the rows: December
    is read (it used to read the template: 0 rows, exit 0, and a cron inbox archived the file
    with its corrections never sent). A workbook whose only header sheet is empty still reads it."""
    sheets = {"Template": [HEADER], "December": [HEADER, *ORDERS]}
    code, results = _dry_run(tmp_path, workbook(tmp_path / "month.xlsx", sheets))
    assert code == 0 and results.height == 2
    (header,) = _events(capsys.readouterr().err, "input.header")
    assert header["sheet"] == "December"
    code, results = _dry_run(tmp_path, workbook(tmp_path / "empty.xlsx", {"T": [HEADER]}))
    assert results.height == 0


def test_no_header_anywhere_names_the_rows_and_sheets_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No sheet names the required columns: exit 2, naming the rows and sheets searched."""
    sheets = {"Cover": [["notes"]], "Data": [["Customer", "Order"], ["acme", "ORD1"]]}
    source = workbook(tmp_path / "none.xlsx", sheets)
    assert run("run", source, "--job", write_job(tmp_path / "job.toml"), "--dry-run") == 2
    err = capsys.readouterr().err
    assert "required column(s) missing: community, purchaseHistoryID" in err
    assert "rows 1-20 of sheets 'Cover', 'Data'" in err


def test_sheet_is_matched_case_insensitively_and_a_wrong_name_gets_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--sheet data reads 'Data'; --sheet Dta is refused with "did you mean 'Data'?" and the
    workbook's sheets."""
    sheets = {"Cover": [["notes"]], "Data": [HEADER, *ORDERS]}
    source = workbook(tmp_path / "s.xlsx", sheets)
    code, results = _dry_run(tmp_path, source, "--sheet", "data")
    assert code == 0 and results.height == 2
    capsys.readouterr()
    assert run("run", source, "--job", tmp_path / "job.toml", "--sheet", "Dta", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "no sheet 'Dta'. Did you mean 'Data'?" in err
    assert "one of: Cover, Data" in err


def test_a_merged_header_cell_names_its_columns_after_its_text(tmp_path: Path) -> None:
    """'Notes' merged over D1:E1 gives columns Notes and Notes (2), a blank header cell
    'column 6'; no __UNNAMED__ column reaches the results."""
    path = tmp_path / "merged.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, HEADER)
    sheet.merge_range(0, 3, 0, 4, "Notes", book.add_format({"bold": True}))
    for number, row in enumerate(ORDERS, start=1):
        sheet.write_row(number, 0, [*row, "checked", "by Ann", "x"])
    book.close()
    code, results = _dry_run(tmp_path, path)
    assert code == 0
    assert results.columns[1:7] == [*HEADER, "Notes", "Notes (2)", "column 6"]
    assert results.get_column("Notes (2)").to_list() == ["by Ann", "by Ann"]


def test_a_total_row_is_reported_once_and_not_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trailing TOTAL row (blank IDs, a SUM formula) and a row of spaces: not sent, one
    warning 'looks like a total row', no errors: the dry run succeeds."""
    path = tmp_path / "total.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, [*HEADER, "Count"])
    for number, row in enumerate(ORDERS, start=1):
        sheet.write_row(number, 0, [*row, 1])
    sheet.write_row(3, 0, ["  ", " "])
    sheet.write(4, 0, "TOTAL")
    sheet.write_formula(4, 3, "=SUM(D2:D3)", None, 2)
    book.close()
    code, results = _dry_run(tmp_path, path)
    assert code == 0
    assert results.get_column("row").to_list() == ["2", "3"]
    (total,) = _events(capsys.readouterr().err, "input.total_row")
    assert total["level"] == "warning"
    assert total["message"] == (
        "total.xlsx: row 5 looks like a total row ('TOTAL' in community, a SUM formula, "
        "no purchaseHistoryID): not sent"
    )


def test_a_total_label_without_a_formula_is_a_total_row_in_a_csv(tmp_path: Path) -> None:
    """'Grand total' in the last line of a CSV, its IDs blank: not sent; a row with an ID that
    says Total is a record like any other."""
    text = ",".join(HEADER) + "\nacme,ORD1,Total refund\nGrand total,,\n"
    code, results = _dry_run(tmp_path, write_csv(tmp_path / "g.csv", text))
    assert code == 0
    assert results.get_column("row").to_list() == ["2"]


def test_a_community_written_with_other_case_gets_a_did_you_mean(tmp_path: Path) -> None:
    """'Acme ' is refused with "did you mean acme?" and the fold_communities hint; 'acem' with
    "did you mean acme?"; with fold_communities = true 'Acme ' is acme."""
    text = ",".join(HEADER) + "\nAcme ,ORD1,a\nacem,ORD2,b\n"
    source = write_csv(tmp_path / "c.csv", text)
    code, results = _dry_run(tmp_path, source)
    assert code == 1
    first, second = results.get_column("error").to_list()
    assert "did you mean acme? (or set fold_communities = true" in first
    assert second.endswith("did you mean acme?")
    code, results = _dry_run(tmp_path, source, fold_communities=True)
    assert results.get_column("status").to_list() == ["would_apply", "invalid"]
    assert code == 1  # acem is still no community


def test_a_number_beside_text_codes_says_what_the_cell_holds(tmp_path: Path) -> None:
    """A text column of codes typed as text (007) with one number cell (7): the message says
    the cell holds the number 7 and Excel shows 7, and names a sibling code, not 15 digits."""
    path = tmp_path / "codes.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, HEADER)
    sheet.write_row(1, 0, ["acme", "ORD1"])
    sheet.write_string(1, 2, "007")
    sheet.write_row(2, 0, ["acme", "ORD2"])
    sheet.write_number(2, 2, 7)
    book.close()
    code, results = _dry_run(tmp_path, path)
    assert code == 1
    error = results.filter(pl.col("row") == "3").get_column("error")[0]
    assert error.startswith("redemptionInstructions: cell C3 holds the number 7 (Excel shows 7)")
    assert "other codes are text with leading zeros (such as 007)" in error
    assert "15 digits" not in error


@pytest.mark.skipif(soffice() is None, reason="LibreOffice (soffice) is not installed")
def test_a_workbook_calc_saved_with_title_merge_and_total_reads_the_same(tmp_path: Path) -> None:
    """The title-row, merged-header, total-row workbook opened and saved by a real Calc: the
    same rows, row numbers and column names."""
    path = tmp_path / "source" / "calc.xlsx"
    path.parent.mkdir()
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Corrections")
    sheet.write(0, 0, TITLE)
    sheet.write_row(2, 0, HEADER)
    sheet.merge_range(2, 3, 2, 4, "Notes")
    for number, row in enumerate(ORDERS, start=3):
        sheet.write_row(number, 0, [*row, "ok", 1])
    sheet.write(5, 0, "Total")
    sheet.write_formula(5, 4, "=SUM(E4:E5)", None, 2)
    book.close()
    saved = save_with_calc(path, tmp_path / "calc")
    code, results = _dry_run(tmp_path, saved)
    assert code == 0
    assert results.get_column("row").to_list() == ["4", "5"]
    assert results.columns[1:6] == [*HEADER, "Notes", "Notes (2)"]


def test_validate_file_says_which_sheet_and_header_row_it_read(tmp_path: Path) -> None:
    """The Python API (the console's seam) reports the sheet, the header row and the notes:
    the header row used and the total row set aside."""
    import reconcile
    from reconcile.job import load_job

    rows = [["Cover note"]], [[TITLE], HEADER, *ORDERS, ["Total", None, None]]
    source = workbook(tmp_path / "api.xlsx", {"Cover": rows[0], "Data": rows[1]})
    checked = reconcile.validate_file(source, load_job(write_job(tmp_path / "job.toml")))
    assert (checked.sheet, checked.header_row, checked.rows, checked.invalid) == ("Data", 2, 2, 0)
    assert checked.notes == (
        "api.xlsx: read sheet 'Data', header row 2 (row 1 above it is ignored); sheet "
        "'Cover' has no header row naming the required columns",
        "api.xlsx: row 5 looks like a total row ('Total' in community, no purchaseHistoryID): "
        "not sent",
    )


def test_a_large_csv_with_a_title_line_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucketed reader of large files leaves a CSV with title lines to the whole-file
    reader, which finds the header: the same rows and row numbers as a small file."""
    from reconcile import buckets
    from reconcile.operations import get_operation

    text = f"{TITLE}\n" + ",".join(HEADER) + "\nacme,ORD1,a\nacme,ORD2,b\n"
    source = write_csv(tmp_path / "large.csv", text)
    assert buckets.spill(source, get_operation("purchase-history"), tmp_path / "rows") is None
    monkeypatch.setattr(buckets, "LARGE_FILE_BYTES", 0)
    code, results = _dry_run(tmp_path, source)
    assert code == 0
    assert results.get_column("row").to_list() == ["3", "4"]


def test_cell_problems_below_a_title_row_name_the_cell_and_row_excel_shows(
    tmp_path: Path,
) -> None:
    """Headers in row 3: a number in the ID column of sheet row 5 is reported for row 5 as
    cell B5, and a zero-padded code (format 000000) in row 4 is read as Excel shows it."""
    path = tmp_path / "cells.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    padded = book.add_format({"num_format": "000000"})
    sheet.write(0, 0, TITLE)
    sheet.write_row(2, 0, ["community", "purchaseHistoryID", "voucherCode"])
    sheet.write_row(3, 0, ["acme", "ORD1"])
    sheet.write_number(3, 2, 4567, padded)
    sheet.write_row(4, 0, ["acme"])
    sheet.write_number(4, 1, 123)
    book.close()
    code, results = _dry_run(tmp_path, path)
    assert code == 1
    assert results.get_column("row").to_list() == ["4", "5"]
    assert results.get_column("voucherCode").to_list()[0] == "004567"
    error = results.get_column("error").to_list()[1]
    assert error.startswith("purchaseHistoryID: cell B5 holds the number 123 (Excel shows 123)")
