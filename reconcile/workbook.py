"""Reading an .xlsx: every cell as text, judged by its type and number format, not by how its
text looks (:mod:`reconcile.workbook_cells`), after the checks that refuse a zip bomb.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile import cell_formats
from reconcile.exceptions import InputError
from reconcile.header_row import (
    HEADER_SEARCH_ROWS,
    find_header,
    header_names,
    header_note,
    searched,
)
from reconcile.lazy import pl
from reconcile.operations.base import Column
from reconcile.suggestions import did_you_mean, folded
from reconcile.table import MAX_COLUMNS, Table, header_map, too_wide
from reconcile.workbook_cells import Cells, cell_types, judged_columns

if TYPE_CHECKING:
    from fastexcel import ExcelReader

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
    path: Path,
    columns: Sequence[Column],
    *,
    sheet: str | None = None,
    families: Sequence[str] = (),
    id_families: Sequence[str] = (),
) -> Table:
    """The first sheet with a header row (or ``sheet``, named case-insensitively) of an .xlsx,
    every cell as text, from the row under its header row (:mod:`reconcile.header_row`).

    A number cell with a zero-padding format reads as Excel shows it (``000456``); a real date
    cell in a date column becomes DD/MM/YYYY (unambiguous); a number, date or boolean cell in an
    ID column is reported (``cell_errors``): a spreadsheet has changed what was typed.
    """
    raw, workbook = _open(path)
    names = list(workbook.sheet_names)
    candidates = [chosen_sheet(path, names, sheet)] if sheet is not None else names
    found = _find_header(path, workbook, candidates, columns, families)
    formats = cell_formats.sheet_formats(raw, found.sheet)
    text, index, sheet_columns = found.frame, found.index, found.sheet_columns
    header_row = formats.header_row + index
    headers = header_names(text.row(index), _merged_header(formats, header_row, sheet_columns))
    text = text.slice(index + 1)
    grid = text.rename({old: f"column_{i}" for i, old in enumerate(text.columns)})
    judged = judged_columns(headers, columns, families, id_families)
    where = Cells(formats, sheet_columns, header_row, index + 1)
    grid, problems = cell_types(workbook, found.sheet, text, grid, headers, judged, where)
    mapping = header_map(path, headers, columns, families, first_row=header_row + 1)
    return Table(
        path=path,
        frame=mapping.apply(grid),
        canonical=mapping.canonical,
        extra=mapping.extra,
        reuploaded=mapping.reuploaded,
        sha256=hashlib.sha256(raw).hexdigest(),
        cell_errors=problems,
        sheet=found.sheet,
        header_row=header_row,
        notes=header_note(path, found.sheet, header_row, found.passed),
        sum_rows=formats.sums,
    )


def _open(path: Path) -> tuple[bytes, ExcelReader]:
    """The workbook's bytes (checked against zip bombs) and fastexcel's reader."""
    import fastexcel

    try:
        raw = path.read_bytes()
        _check_expanded_size(path, raw)
        return raw, fastexcel.read_excel(raw)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the input file ({exc.strerror})") from None
    except InputError:  # _check_expanded_size's own message, already naming the file
        raise
    except Exception as exc:  # fastexcel raises its own errors for damaged files
        raise InputError(f"{path}: not a readable .xlsx workbook ({exc}).") from None


def chosen_sheet(path: Path, names: Sequence[str], sheet: str) -> str:
    """The sheet ``--sheet`` names, case and outer spaces ignored; InputError listing the
    workbook's sheets (with the closest name) when there is none."""
    if sheet in names:
        return sheet
    same = [n for n in names if folded(n) == folded(sheet)]
    if same:
        return same[0]
    raise InputError(
        f"{path}: no sheet {sheet!r}.{did_you_mean(sheet, names)} "
        f"Fix: use --sheet with one of: {', '.join(names)}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    sheet: str
    frame: pl.DataFrame
    """The sheet, every cell as text, read whole without a header row (from its first row
    with a value)."""
    sheet_columns: Sequence[int]
    """The sheet column (0-based) of each of the frame's columns."""
    index: int
    """The header's row in ``loaded``."""
    passed: Sequence[str]
    """The sheets before it without a header row."""


def _find_header(
    path: Path,
    workbook: ExcelReader,
    candidates: Sequence[str],
    columns: Sequence[Column],
    families: Sequence[str],
) -> _Found:
    """The first of ``candidates`` with a header row naming the required columns in its first
    rows; the first is read whole at once (it usually is the one), the others' first rows
    only until one has a header. InputError naming the sheets searched when none has."""
    required = [c.name for c in columns if c.required]
    header_only: _Found | None = None
    for number, name in enumerate(candidates):
        rows = None if number == 0 else HEADER_SEARCH_ROWS
        loaded = workbook.load_sheet(name, header_row=None, dtypes="string", n_rows=rows)
        frame = loaded.to_polars()
        index = find_header(frame.head(HEADER_SEARCH_ROWS).rows(), required)
        if index is not None:
            if rows is not None:
                loaded = workbook.load_sheet(name, header_row=None, dtypes="string")
                frame = loaded.to_polars()
            columns_at = [c.absolute_index for c in loaded.available_columns()]
            found = _Found(name, frame, columns_at, index, candidates[:number])
            if _has_rows(frame, index) or len(candidates) == 1:
                return found
            # A template sheet (the header, no rows) before the month's data: never the one
            # a run silently reads as "0 rows, all applied" while the data waits unsent.
            header_only = header_only or found
    if header_only is not None:
        return header_only
    if len(candidates) == 1 and not workbook.load_sheet(candidates[0]).width:
        raise InputError(
            f"{path}: sheet {candidates[0]!r} is empty. Fix: add a header row and data rows."
        )
    first = workbook.load_sheet(candidates[0], header_row=None, dtypes="string").to_polars()
    header_map(
        path,
        header_names(first.row(0)) if first.height else [],
        columns,
        families,
        searched=searched(candidates),
    )
    raise AssertionError("header_map refuses a header without the required columns")


def _has_rows(frame: pl.DataFrame, index: int) -> bool:
    """Any cell with text below the header row."""
    below = frame.slice(index + 1)
    return below.height > 0 and bool(
        below.select(pl.any_horizontal(pl.all().str.strip_chars().str.len_chars() > 0))
        .to_series()
        .any()
    )


def _merged_header(
    formats: cell_formats.SheetFormats, header_row: int, sheet_columns: Sequence[int]
) -> dict[int, int]:
    """Position -> position of the cell holding its text, for the header cells a merged range
    starting in the header row covers."""
    position = {column: p for p, column in enumerate(sheet_columns)}
    covered: dict[int, int] = {}
    for first_row, first, _, last in formats.merged:
        if first_row == header_row and first in position:
            covered |= {
                position[c]: position[first] for c in range(first + 1, last + 1) if c in position
            }
    return covered
