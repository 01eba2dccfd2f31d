"""Number formats read from a workbook's styles, and what Excel shows under them."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from reconcile import cell_formats


@pytest.mark.parametrize(
    ("value", "code", "shown"),
    [
        (456, "000000", "000456"),
        (-456, "000000", "-000456"),
        (12000, "0.00E+00", "1.20E+04"),
        (4.00012345678901e18, "General", "4.00012E+18"),
        (1e20, "General", "1E+20"),
        (99887766, "General", "99887766"),
        (99887766, "@", "99887766"),
        (0.30000000000000004, "General", "0.3"),
        (2100, "#,##0.00", "2,100.00"),
        (0.5, "0%", "50%"),
    ],
)
def test_what_excel_shows(value: float, code: str, shown: str) -> None:
    """Excel's display of a number under the formats correction files have (General in a
    column of the default width; long numbers in scientific notation)."""
    assert cell_formats.shown(value, code) == shown


def test_what_excel_shows_for_a_date() -> None:
    """Day, month and year tokens of a date format; a time format falls back to DD/MM/YYYY."""
    day = dt.date(2027, 1, 2)
    assert cell_formats.shown_date(day, "DD/MM/YY") == "02/01/27"
    assert cell_formats.shown_date(day, "d-mmm-yy") == "2-Jan-27"
    assert cell_formats.shown_date(day, "hh:mm") == "02/01/2027"


def _book(path: Path) -> bytes:
    book = xlsxwriter.Workbook(path)
    book.add_worksheet("Read me").write(0, 0, "see the next sheet")
    sheet = book.add_worksheet("Codes")
    padded = book.add_format({"num_format": "000000"})
    science = book.add_format({"num_format": "0.00E+00"})
    sheet.write_row(2, 1, ["code", "other"])
    for row in range(3, 400):
        sheet.write_number(row, 1, row, padded)
        sheet.write_number(row, 2, row * 1000, science)
    book.close()
    return path.read_bytes()


def test_the_formats_of_a_sheet_are_read_from_its_styles_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cell's style index leads to its numFmt, for the sheet named (not the first),
    its header row found, however the sheet's XML is cut into chunks."""
    raw = _book(tmp_path / "b.xlsx")
    whole = cell_formats.sheet_formats(raw, "Codes")
    monkeypatch.setattr(cell_formats, "_CHUNK", 97)
    chunked = cell_formats.sheet_formats(raw, "Codes")
    assert whole == chunked
    assert whole.header_row == 3
    assert whole.codes[(4, 1)] == "000000" and whole.codes[(4, 2)] == "0.00E+00"
    assert whole.padded()[(399, 1)] == 6 and (399, 2) not in whole.padded()
    assert cell_formats.sheet_formats(raw, 0).codes == {}


def test_attributes_in_another_order_and_prefixed_tags_are_read(tmp_path: Path) -> None:
    """A writer may put ``s`` before ``r`` and prefix the main namespace (``<x:c>``)."""
    raw = _book(tmp_path / "b.xlsx")
    source, target = io.BytesIO(raw), io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == "xl/worksheets/sheet2.xml":
                assert b'<c r="B5" s="1"' in data
                data = data.replace(b'<c r="B5" s="1"', b'<x:c s="1" r="B5"')
            new.writestr(item, data)
    found = cell_formats.sheet_formats(target.getvalue(), "Codes")
    assert found.codes[(5, 1)] == "000000"
