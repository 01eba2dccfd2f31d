"""Workbooks as LibreOffice Calc saves them: a finance team's file, opened and saved in Calc.

``tests/data/calc/<operation>.csv`` holds what a team typed; Calc (headless, its default CSV
import, in an en-GB or en-US profile) turns it into numbers and saves it as xlsx, as Calc does.
``padded_source`` is a workbook whose code column is formatted ``000000``, which Calc opens and
saves again. When LibreOffice is installed the tests convert the files afresh; without it they
read the copies Calc saved when the fixtures were made (``uv run python -m tests.calc``
remakes them with the installed LibreOffice).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import xlsxwriter

DATA = Path(__file__).parent / "data" / "calc"
#: LibreOffice's language codes (the CSV filter's "language" token) for the two profiles.
LANGUAGES = {"en-GB": 2057, "en-US": 1033}
#: Columns (1-based) a team formatted as Text before pasting, per fixture: every seeded status ID
#: (695e0001...) is a number to Calc's import (695 x 10^...), as any hex ID of digits and one e.
TEXT_COLUMNS = {"redemption-status": (3,)}
OPERATIONS = (
    "voucherify-order",
    "voucherify-rollback",
    "purchase-history",
    "redemption-status",
    "capillary-transaction",
)


def soffice() -> str | None:
    return shutil.which("soffice")


def save_with_calc(
    source: Path, folder: Path, language: str = "en-GB", text_columns: tuple[int, ...] = ()
) -> Path:
    """``source`` (a CSV opened with Calc's default import in ``language``, ``text_columns``
    formatted as Text; or a workbook) saved by Calc as ``folder/<stem>.xlsx``."""
    program = soffice()
    assert program is not None, "LibreOffice (soffice) is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        command = [
            program,
            "--headless",
            f"-env:UserInstallation=file://{profile}",
            "--convert-to",
            "xlsx:Calc MS Excel 2007 XML",
            "--outdir",
            str(folder),
        ]
        if source.suffix == ".csv":
            # Comma, double quote, UTF-8, from line 1, default column types, the language.
            formats = "/".join(f"{c}/2" for c in text_columns)  # 2: Text
            command += [f"--infilter=CSV:44,34,76,1,{formats},{LANGUAGES[language]}"]
        subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=180)
    saved = folder / f"{source.stem}.xlsx"
    assert saved.exists(), f"LibreOffice did not write {saved}"
    return saved


def padded_source(path: Path) -> Path:
    """A purchase-history workbook whose voucherCode column is formatted ``000000`` (Excel
    shows 98765 as 098765), as an analyst formats a column of codes; one code is text."""
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    padded = book.add_format({"num_format": "000000"})
    sheet.write_row(0, 0, ["community", "purchaseHistoryID", "voucherCode", "voucherExpiryDate"])
    rows = [
        ("ORD202641612055614747", 98765),
        ("ORD202641612055614748", 4567),
        ("ORD202641612055614749", "000123"),
    ]
    for number, (order, code) in enumerate(rows, start=1):
        sheet.write_string(number, 0, "acme")
        sheet.write_string(number, 1, order)
        if isinstance(code, int):
            sheet.write_number(number, 2, code, padded)
        else:
            sheet.write_string(number, 2, code, padded)
        sheet.write_string(number, 3, "31/12/2026")
    book.close()
    return path


def calc_workbook(name: str, folder: Path, language: str = "en-GB") -> Path:
    """The workbook Calc saves for ``name`` (an operation's CSV, or ``padded``): converted now
    when LibreOffice is installed, else the copy Calc saved when the fixtures were made."""
    if soffice() is None:
        return DATA / f"{name}.{language}.xlsx"
    folder.mkdir(parents=True, exist_ok=True)
    source = (
        padded_source(folder / "padded-source.xlsx") if name == "padded" else DATA / f"{name}.csv"
    )
    saved = save_with_calc(
        source, folder / f"calc-{language}", language, TEXT_COLUMNS.get(name, ())
    )
    return saved.rename(folder / f"{name}.{language}.xlsx")


def remake() -> None:
    """Write every fixture's Calc-saved copy into tests/data/calc/."""
    with tempfile.TemporaryDirectory() as scratch:
        for language in LANGUAGES:
            for name in (*OPERATIONS, "padded"):
                made = calc_workbook(name, Path(scratch), language)
                shutil.copyfile(made, DATA / made.name)


if __name__ == "__main__":
    remake()
