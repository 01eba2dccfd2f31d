"""Where a file's header row is, and what its cells are called.

Analysts put a title above the headers ("December voucher corrections - APPROVED BY CFO"), a
blank line, a note. The header row is the first row, within the first
:data:`HEADER_SEARCH_ROWS`, that names every required column of the operation; the rows above
it are ignored, and rows keep the numbers the spreadsheet shows. A header cell merged over
several columns names each of them after its text (``Notes``, ``Notes (2)``); a blank one is
``column N``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: How many rows from the top may hold titles and notes before the header row.
HEADER_SEARCH_ROWS = 20
_BOM = b"\xef\xbb\xbf"
_DELIMITERS = (",", ";", "\t")


def header_key(header: str) -> str:
    """Headers match case-insensitively, ignoring spaces, underscores and hyphens."""
    return re.sub(r"[\s_\-]+", "", header).casefold()


def names_all(cells: Iterable[object], required: Sequence[str]) -> bool:
    """Whether ``cells`` (one row) name every column of ``required`` (and at least one cell
    has a value)."""
    keys = {header_key(str(c)) for c in cells if c is not None and str(c).strip()}
    return bool(keys) and {header_key(r) for r in required} <= keys


def find_header(rows: Iterable[Sequence[object]], required: Sequence[str]) -> int | None:
    """The index of the first of ``rows`` (at most :data:`HEADER_SEARCH_ROWS`) that names
    every column of ``required``; None when none does."""
    for index, row in enumerate(rows):
        if index >= HEADER_SEARCH_ROWS:
            break
        if names_all(row, required):
            return index
    return None


def sniff_line(line: str) -> str:
    """The delimiter used most often in ``line`` (outside quotes); a comma when none is."""
    unquoted = re.sub(r'"[^"]*"', "", line)
    counts = {d: unquoted.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_header(raw: bytes, separator: str | None, required: Sequence[str]) -> tuple[int, int, str]:
    """Where a CSV's header line is: its byte offset in ``raw``, its line index (0: the first
    line) and the delimiter it uses (``separator`` when the file names one). The first line,
    sniffed, when no line of the first :data:`HEADER_SEARCH_ROWS` names the ``required``
    columns (the caller's header check then says what is missing)."""
    start = len(_BOM) if raw.startswith(_BOM) else 0
    lines = raw[start : start + (1 << 16)].split(b"\n")[:HEADER_SEARCH_ROWS]
    position = start
    for index, line in enumerate(lines):
        text = line.decode("utf-8", "replace").rstrip("\r")
        delimiter = separator or sniff_line(text)
        if names_all(next(csv.reader([text], delimiter=delimiter), []), required):
            return (0 if index == 0 else position), index, delimiter
        position += len(line) + 1
    first = lines[0].decode("utf-8", "replace") if lines else ""
    return 0, 0, separator or sniff_line(first)


def header_names(cells: Sequence[object], merged: Mapping[int, int] | None = None) -> list[str]:
    """The header of each column from its cell's text (stripped; ``""`` for a blank cell,
    which the header check names ``column N``). ``merged`` maps a position covered by a merged
    header cell to the position of the cell holding its text: ``Notes`` merged over three
    columns names them ``Notes``, ``Notes (2)``, ``Notes (3)``."""
    names = ["" if c is None else str(c).strip() for c in cells]
    seen: dict[int, int] = {}
    for position, origin in sorted((merged or {}).items()):
        if position != origin and not names[position] and 0 <= origin < len(names):
            seen[origin] = seen.get(origin, 1) + 1
            if names[origin]:
                names[position] = f"{names[origin]} ({seen[origin]})"
    return names


def searched(sheets: Sequence[str]) -> str:
    """Where the header was looked for, for the message that none was found."""
    rows = f"rows 1-{HEADER_SEARCH_ROWS}"
    if not sheets:
        return rows
    listed = ", ".join(repr(s) for s in sheets)
    return f"{rows} of sheet{'s' if len(sheets) > 1 else ''} {listed}"


def header_note(path: Path, sheet: str | None, row: int, passed: Sequence[str]) -> tuple[str, ...]:
    """The note that the header was not where a reader would look first (row 1 of the first
    sheet): which sheet and row were used, and which sheets had no header."""
    if row == 1 and not passed:
        return ()
    where = f"sheet {sheet!r}, " if sheet is not None else ""
    above = (
        " (row 1 above it is ignored)"
        if row == 2
        else f" (rows 1-{row - 1} above it are ignored)"
        if row > 2
        else ""
    )
    listed = ", ".join(repr(s) for s in passed)
    skipped = (
        f"; {'sheets' if len(passed) > 1 else 'sheet'} {listed} "
        f"{'have' if len(passed) > 1 else 'has'} no header row naming the required columns"
        if passed
        else ""
    )
    return (f"{path.name}: read {where}header row {row}{above}{skipped}",)
