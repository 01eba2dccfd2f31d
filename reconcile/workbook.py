"""Reading an .xlsx: every cell as text, judged by its type and number format, not by how its
text looks (:mod:`reconcile.workbook_cells`), after the checks that refuse a zip bomb.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from reconcile import cell_formats
from reconcile.exceptions import InputError
from reconcile.intake import MAX_COLUMNS, Table, _map_headers, too_wide
from reconcile.operations.base import Column
from reconcile.workbook_cells import Cells, cell_types, judged_columns

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
    path: Path,
    columns: Sequence[Column],
    *,
    sheet: str | None = None,
    families: Sequence[str] = (),
    id_families: Sequence[str] = (),
) -> Table:
    """The first sheet (or ``sheet``) of an .xlsx, every cell as text.

    A number cell with a zero-padding format reads as Excel shows it (``000456``); a real date
    cell in a date column becomes DD/MM/YYYY (unambiguous); a number, date or boolean cell in an
    ID column is reported (``cell_errors``): a spreadsheet has changed what was typed.
    """
    import fastexcel

    try:
        raw = path.read_bytes()
        _check_expanded_size(path, raw)
        workbook = fastexcel.read_excel(raw)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the input file ({exc.strerror})") from None
    except InputError:  # _check_expanded_size's own message, already naming the file
        raise
    except Exception as exc:  # fastexcel raises its own errors for damaged files
        raise InputError(f"{path}: not a readable .xlsx workbook ({exc}).") from None
    names = workbook.sheet_names
    if sheet is not None and sheet not in names:
        raise InputError(
            f"{path}: no sheet {sheet!r}. Fix: use --sheet with one of: {', '.join(names)}"
        )
    chosen: str | int = sheet if sheet is not None else 0
    loaded = workbook.load_sheet(chosen, dtypes="string")
    text = loaded.to_polars()
    if text.width == 0:
        raise InputError(f"{path}: sheet {chosen!r} is empty. Fix: add a header row and data rows.")
    headers = [str(h).strip() for h in text.columns]
    grid = text.rename({old: f"column_{i}" for i, old in enumerate(text.columns)})
    judged = judged_columns(headers, columns, families, id_families)
    where = Cells(
        cell_formats.sheet_formats(raw, chosen),
        [c.absolute_index for c in loaded.available_columns()],
    )
    grid, problems = cell_types(workbook, chosen, text, grid, headers, judged, where)
    table = _map_headers(path, grid, headers, columns, families)
    return dataclasses.replace(table, sha256=hashlib.sha256(raw).hexdigest(), cell_errors=problems)
