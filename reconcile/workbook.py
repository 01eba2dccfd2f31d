"""Reading an .xlsx: every cell as text, judged by its type, not by how its text looks.

A text cell is what was typed. A number cell in a column the API reads as text is refused unless
it is exactly its text (a spreadsheet keeps 15 digits and may write an exponent). A date cell in
a date column becomes DD/MM/YYYY, unless the column shows the file was read in a month-first
locale. The cell types come from fastexcel: read as booleans, only number cells are non-null;
read as dates, only number and date cells are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconcile._lazy import pl
from reconcile.exceptions import InputError
from reconcile.intake import (
    MAX_COLUMNS,
    ROW,
    Table,
    _map_headers,
    family_column,
    header_key,
    too_wide,
)
from reconcile.operations.base import Column

#: What a workbook may expand to once unzipped: a 20 MB upload of real data stays far below it,
#: a zip bomb (a 1 MB file whose sheet expands to 600 MB) is refused before it is parsed.
MAX_EXPANDED_BYTES = 256 * 2**20


#: The most cells (rows x columns, from a sheet's declared dimension) a correction file may have.
MAX_CELLS = 50_000_000
_DIMENSION = re.compile(rb'<dimension ref="[A-Z]+([0-9]+)(?::([A-Z]+)([0-9]+))?"')


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + letter - ord("A") + 1
    return number


def _check_expanded_size(path: Path, raw: bytes) -> None:
    """Refuse a workbook whose zipped parts expand past MAX_EXPANDED_BYTES, from the sizes its
    zip directory declares (each part is then read through once, a chunk at a time, which
    proves the declared sizes true), or whose sheets declare more than MAX_CELLS cells."""
    import io
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            expanded = sum(item.file_size for item in archive.infolist())
            if expanded > MAX_EXPANDED_BYTES:
                raise InputError(
                    f"{path}: the workbook expands to {expanded / 2**20:,.0f} MiB when opened, "
                    f"over the {MAX_EXPANDED_BYTES / 2**20:,.0f} MiB a correction file may take "
                    "(a damaged or malicious file). Fix: save the sheet as CSV, or split it "
                    "into smaller files."
                )
            for item in archive.infolist():
                with archive.open(item) as member:
                    head = member.read(4096)
                    if item.filename.startswith("xl/worksheets/") and item.filename.endswith(
                        ".xml"
                    ):
                        _check_dimension(path, head)
                    # Read to the end, a chunk at a time: zipfile stops at the declared size
                    # and checks the CRC, so a part that expands past what the directory
                    # declares (a lying zip bomb) is refused here, in bounded memory.
                    while member.read(1 << 20):
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(
            f"{path}: not a readable .xlsx workbook ({exc}): a damaged or malicious file. "
            "Fix: open it in a spreadsheet and save it again, or save the sheet as CSV."
        ) from None


def _check_dimension(path: Path, head: bytes) -> None:
    found = _DIMENSION.search(head)
    if found is None or found.group(2) is None:
        return
    rows, columns = int(found.group(3)), _column_number(found.group(2))
    if columns > MAX_COLUMNS:
        raise too_wide(path, columns)
    if rows * columns > MAX_CELLS:
        raise InputError(
            f"{path}: a sheet declares {rows:,} rows x {columns:,} columns, over the "
            f"{MAX_CELLS:,} cells a correction file may have. Fix: split it into smaller files."
        )


def read_workbook(
    path: Path, columns: Sequence[Column], *, sheet: str | None = None, families: Sequence[str] = ()
) -> Table:
    """The first sheet (or ``sheet``) of an .xlsx, every cell as text.

    A real date cell in a date column becomes DD/MM/YYYY (unambiguous); a number cell in an ID
    column is reported: Excel has already rounded its digits.
    """
    import fastexcel

    try:
        raw = path.read_bytes()
        _check_expanded_size(path, raw)
        workbook = fastexcel.read_excel(raw)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the input file ({exc.strerror})") from None
    except Exception as exc:  # fastexcel raises its own errors for damaged files
        raise InputError(f"{path}: not a readable .xlsx workbook ({exc}).") from None
    names = workbook.sheet_names
    if sheet is not None and sheet not in names:
        raise InputError(
            f"{path}: no sheet {sheet!r}. Fix: use --sheet with one of: {', '.join(names)}"
        )
    chosen: str | int = sheet if sheet is not None else 0
    text = workbook.load_sheet(chosen, dtypes="string").to_polars()
    if text.width == 0:
        raise InputError(f"{path}: sheet {chosen!r} is empty. Fix: add a header row and data rows.")
    headers = [str(h).strip() for h in text.columns]
    grid = text.rename({old: f"column_{i}" for i, old in enumerate(text.columns)})
    judged = _judged_columns(headers, columns, families)
    grid, problems = _cell_types(workbook, chosen, text, grid, headers, judged)
    table = _map_headers(path, grid, headers, columns, families)
    return dataclasses.replace(table, sha256=hashlib.sha256(raw).hexdigest(), cell_errors=problems)


def _cell_types(
    workbook: Any,
    chosen: str | int,
    text: pl.DataFrame,
    grid: pl.DataFrame,
    headers: Sequence[str],
    judged: Mapping[int, str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Date cells of date columns as DD/MM/YYYY, and the problems cell types show (rounded
    number cells, swapped dates): the grid with its fixes, and (row, message) problems."""
    if not judged:
        return grid, pl.DataFrame(schema={ROW: pl.Int64, "message": pl.String})
    originals = [text.columns[p] for p in judged]
    # Cell types, which a text read hides: read as booleans, a number cell is non-null (a
    # text cell is null, digits or not); read as dates, a date cell is non-null.
    as_bool = workbook.load_sheet(
        chosen, dtypes=dict.fromkeys(originals, "boolean"), use_columns=originals
    ).to_polars()
    as_date = workbook.load_sheet(
        chosen, dtypes=dict.fromkeys(originals, "date"), use_columns=originals
    ).to_polars()
    fixes, flagged = [], []
    for position, kind in judged.items():
        original = text.columns[position]
        shown = text.get_column(original)
        number = as_bool.get_column(original).is_not_null() & ~shown.is_in(["true", "false"])
        date = as_date.get_column(original).is_not_null() & as_bool.get_column(original).is_null()
        name = f"column_{position}"
        if kind == "date":
            fixes.append(
                pl.when(pl.lit(date))
                .then(pl.lit(as_date.get_column(original)).dt.strftime("%d/%m/%Y"))
                .otherwise(pl.col(name))
                .alias(name)
            )
            flagged.append(_swapped_dates(headers[position], shown, date))
        else:
            flagged.append(_damaged_numbers(headers[position], shown, number))
    return grid.with_columns(fixes), pl.concat(flagged)


#: A number cell whose value text is exactly what was typed: a whole number of at most 15
#: digits (a spreadsheet keeps 15 significant digits), no exponent, no decimals.
_LOSSLESS_NUMBER = r"^-?[1-9][0-9]{0,14}$|^0$"


#: A date written day first that cannot be read month first (day above 12): DD/MM/YYYY text a
#: spreadsheet in a month-first locale left as text while it turned the others into dates.
_DAY_FIRST_ONLY = r"^(1[3-9]|2[0-9]|3[01])/(0?[1-9]|1[0-2])/[0-9]{4}$"


def _judged_columns(
    headers: Sequence[str], columns: Sequence[Column], families: Sequence[str]
) -> dict[int, str]:
    """Positions of the columns whose cells a spreadsheet may have changed, with their kind:
    ``date`` columns, and every column the API reads as text (IDs, codes, text, text-typed
    family columns): not the numbers an API reads as numbers (amounts, quantities)."""
    by_key = {header_key(c.name): c for c in columns}
    judged: dict[int, str] = {}
    for position, header in enumerate(headers):
        column = by_key.get(header_key(header))
        if column is not None:
            if column.kind != "number":
                judged[position] = "date" if column.kind == "date" else "text"
            continue
        family = family_column(header, families)
        if family is not None and family.rpartition(":")[2] in (family, "text"):
            judged[position] = "text"
    return judged


def _damaged_numbers(header: str, shown: pl.Series, number: pl.Series) -> pl.DataFrame:
    """Number cells in a column the API reads as text, unless the number is exactly its text:
    past 15 digits a spreadsheet has rounded them, an exponent or decimals are not what was
    typed, and beside text cells with leading zeros a number has lost its own. A text cell is
    never flagged, digits or not (a column formatted as Text). A leading zero that a spreadsheet
    dropped from a column of numbers only leaves no trace in the file: that cannot be seen."""
    # Text cells of digits with a leading zero say the column's values have leading zeros: a
    # number cell beside them has probably lost its own, whatever its value.
    zero_led = (~number & shown.str.contains(r"^0[0-9]+$").fill_null(False)).any()
    hit = number & (zero_led | ~shown.str.contains(_LOSSLESS_NUMBER).fill_null(False))
    return _flagged(
        hit,
        f"{header}: is a number cell that a spreadsheet changed (it keeps 15 digits and may "
        "write an exponent or decimals): the API reads this value as text. Format the "
        "column as Text, paste the values again from the source and save",
    )


def _flagged(hit: pl.Series, message: str) -> pl.DataFrame:
    """(``row``, ``message``) for the cells ``hit`` marks (row 2 is the first under the header)."""
    rows = pl.int_range(2, hit.len() + 2, eager=True)
    return (
        pl.DataFrame({ROW: rows, "hit": hit})
        .filter("hit")
        .select(ROW, pl.lit(message).alias("message"))
    )


def _swapped_dates(header: str, shown: pl.Series, date: pl.Series) -> pl.DataFrame:
    """Real date cells beside text dates that only read day first (31/12/2026): the file was
    opened in a month-first locale, which read 01/02/2027 as 2 January and left 31/12/2026 as
    text. Its real dates may have day and month swapped, so each is refused."""
    day_first_text = (~date & shown.str.contains(_DAY_FIRST_ONLY).fill_null(False)).any()
    hit = date & day_first_text
    return _flagged(
        hit,
        f"{header}: is a date cell in a column where other dates stayed text (such as "
        "31/12/2026): the file was read in a month-first locale, so this date's day and "
        "month may be swapped. Format the column as Text and type the dates as DD/MM/YYYY",
    )
