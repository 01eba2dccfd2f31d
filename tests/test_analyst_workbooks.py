"""Workbooks as analysts make them (issue 30): title rows above the header, data on a later
sheet, merged header cells, a total row, codes typed into a text column beside numbers.

The workbooks are written with xlsxwriter (number formats, merges, formulas, several sheets),
and where LibreOffice is installed, saved again by a real Calc (tests/calc.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xlsxwriter

from reconcile.intake import sheet_names
from tests.helpers import write_csv

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
