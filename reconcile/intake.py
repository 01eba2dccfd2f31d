"""Input file -> a polars frame of strings with spreadsheet row numbers.

Finance teams' files come from Excel: UTF-8 with or without BOM, Windows-1252 or UTF-16
("Unicode Text"), comma, semicolon or tab delimited, CRLF, human headers. Every cell stays text
(IDs keep their leading zeros).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from reconcile import cell_formats
from reconcile.exceptions import InputError
from reconcile.header_row import csv_header, header_names, header_note, searched, sniff_line
from reconcile.lazy import pl
from reconcile.operations.base import Column
from reconcile.table import (
    FORMULA_START,
    MAX_COLUMNS,
    WORKBOOK_SUFFIXES,
    Table,
    header_map,
    too_wide,
)
from reconcile.workbook import read_workbook

if TYPE_CHECKING:
    from reconcile.table import FrameT

_BOM = b"\xef\xbb\xbf"
#: Excel's "Unicode Text" files are UTF-16 (little-endian) with one of these byte-order marks.
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def as_utf8(path: Path, raw: bytes) -> bytes | None:
    """``raw`` re-encoded as UTF-8 when it is Windows-1252 (not UTF-8); None when it is UTF-8.

    Only called when polars refused the bytes: the common UTF-8 file is never decoded in Python.
    """
    try:
        raw.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    return recoded(path, raw, "cp1252", "neither UTF-8 nor Windows-1252")


def recoded(path: Path, raw: bytes, encoding: str, unreadable: str) -> bytes:
    """``raw`` read as ``encoding``, as UTF-8; an InputError naming the first bad byte."""
    try:
        return raw.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: cannot read the file: byte {raw[exc.start]:#04x} at offset {exc.start} is "
            f"{unreadable}. Fix: save it from Excel as 'CSV UTF-8'."
        ) from None


def check_width(path: Path, source: bytes | IO[bytes], separator: str) -> None:
    """Refuse a CSV whose first record (the header, quotes respected) has over MAX_COLUMNS
    cells; reads only that record, decoding lazily (Latin-1 keeps every ASCII delimiter). A
    header line without quotes is counted at C speed (bytes.count), so a 1,000,000-column file
    is refused in milliseconds."""
    if isinstance(source, bytes):
        ends = [i for i in (source.find(b"\n"), source.find(b"\r")) if i >= 0]  # \r alone too
        line = source[: min(ends)] if ends else source
        if b'"' not in line:
            count = line.count(separator.encode("latin-1")) + 1
            if count > MAX_COLUMNS:
                raise too_wide(path, count)
            return
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    text = io.TextIOWrapper(stream, encoding="latin-1", newline="")
    header = next(csv.reader(text, delimiter=separator), [])
    if len(header) > MAX_COLUMNS:
        raise too_wide(path, len(header))


def sniff_delimiter(data: bytes) -> str:
    """The delimiter used most often in the header line (outside quotes)."""
    return sniff_line(data[:65536].split(b"\n", 1)[0].decode("utf-8", "replace"))


def sheet_names(path: Path) -> list[str]:
    """The sheets of a workbook (``.xlsx``/``.xlsm``), in the order Excel shows their tabs; ``[]``
    for a CSV. What ``read_table(..., sheet=NAME)`` accepts (case-insensitively). InputError for
    a file that cannot be opened or is not a workbook."""
    if path.suffix.lower() not in WORKBOOK_SUFFIXES:
        return []
    try:
        return cell_formats.sheet_names(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot open the input file ({exc.strerror})") from None
    except zipfile.BadZipFile as exc:
        raise InputError(
            f"{path}: not a readable .xlsx workbook ({exc}). Fix: open it in a spreadsheet and "
            "save it again, or save the sheet as CSV."
        ) from None


def read_table(
    path: Path,
    columns: Sequence[Column],
    *,
    sheet: str | None = None,
    families: Sequence[str] = (),
    id_families: Sequence[str] = (),
) -> Table:
    """Read ``path`` (CSV, or a workbook by its suffix) and map its headers onto ``columns``
    (``id_families``: the families whose text columns are IDs, for a workbook's cell checks).

    Raises InputError (nothing is sent) for an unreadable file, a missing required column, or two
    headers that mean the same column.
    """
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        return read_workbook(path, columns, sheet=sheet, families=families, id_families=id_families)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot open the input file ({exc.strerror})") from None
    # The manifest's SHA-256 is computed while polars parses (hashlib releases the GIL).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        digest = pool.submit(lambda: hashlib.sha256(raw).hexdigest())
        grid, line = _parse_csv(path, raw, [c.name for c in columns if c.required])
    mapping = header_map(
        path,
        header_names(grid.row(0)),
        columns,
        families,
        first_row=line + 2,
        searched=searched(()),
    )
    table = Table(
        path=path,
        frame=mapping.apply(grid.slice(1)),
        canonical=mapping.canonical,
        extra=mapping.extra,
        reuploaded=mapping.reuploaded,
        header_row=line + 1,
        notes=header_note(path, None, line + 1, ()),
    )
    if table.reuploaded:
        table = dataclasses.replace(table, frame=without_excel_guard(table.frame))
    return dataclasses.replace(table, sha256=digest.result())


def without_excel_guard(frame: FrameT) -> FrameT:
    """Our results and errors CSVs prefix formula-like cells with a quote, for Excel; when such
    a file comes back as input, the quote goes, so ``-5`` is sent as ``-5``, not ``'-5``."""
    text = [c for c, dtype in frame.collect_schema().items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(f"^'{FORMULA_START}"))
        .then(pl.col(c).str.slice(1))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def _parse_csv(path: Path, raw: bytes, required: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """Every cell as a string from the header line on (row 0), and the index of the header
    line (title lines above it are skipped); polars checks the UTF-8 and skips a BOM; a UTF-16
    file is re-encoded first, a Windows-1252 one when polars refuses it."""
    if raw.startswith(UTF16_BOMS):
        raw = recoded(
            path, raw, "utf-16", "not UTF-16, although the file starts like Excel's 'Unicode Text'"
        )
    if not raw[:65536].strip() and not raw.strip():
        raise InputError(f"{path}: the file is empty. Fix: add a header row and data rows.")
    raw, named = excel_separator_line(raw)
    offset, line, separator = csv_header(raw, named, required)
    raw = raw[offset:]
    check_width(path, raw, separator)
    try:
        return _read_grid(raw, separator), line
    except pl.exceptions.PolarsError as exc:
        problem, data = exc, raw
    reencoded = as_utf8(path, raw)
    if reencoded is not None:
        try:
            return _read_grid(reencoded, separator), line
        except pl.exceptions.PolarsError as exc:
            problem, data = exc, reencoded
    raise InputError(
        _csv_problem(path, data, separator, line) or f"{path}: not a readable CSV file ({problem})."
    )


_SEPARATOR_LINE = re.compile(rb"^(?:\xef\xbb\xbf)?sep=(.)\r?\n", re.IGNORECASE)


def excel_separator_line(raw: bytes) -> tuple[bytes, str | None]:
    """Excel's ``sep=;`` first line names the delimiter and is not a row (Excel hides it, so
    the header stays row 1): the file without it, and that delimiter (None when absent)."""
    found = _SEPARATOR_LINE.match(raw)
    if found is None:
        return raw, None
    return raw[found.end() :], found.group(1).decode("latin-1")


def _read_grid(data: bytes, separator: str) -> pl.DataFrame:
    return pl.read_csv(
        data, has_header=False, infer_schema=False, separator=separator, quote_char='"'
    )


def _csv_problem(path: Path, data: bytes, separator: str, line: int = 0) -> str | None:
    """Name the first record with more cells than the header (only on the error path)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=separator)
    header = next(reader, [])
    for number, record in enumerate(reader, start=line + 2):
        if len(record) > len(header):
            shown = "tab" if separator == "\t" else repr(separator)
            return (
                f"{path}: row {number} has {len(record)} cells but the header has {len(header)}: "
                f"a value probably contains a {shown} without quotes. Fix: put that value in "
                "double quotes, or save the file from Excel again."
            )
    return None
