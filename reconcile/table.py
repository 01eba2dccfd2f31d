"""What intake, the workbook reader and everything after them share about an input table: the
frame's column names, the accepted input suffixes, the width limit, the :class:`Table` itself
and the mapping of a file's headers onto an operation's columns.

Below :mod:`reconcile.intake` and :mod:`reconcile.workbook`, so both (and the stages after
them) import these names from one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from reconcile.columns import ROW
from reconcile.exceptions import InputError
from reconcile.header_row import header_key
from reconcile.lazy import pl

if TYPE_CHECKING:
    import polars

    from reconcile.operations.base import Column

    FrameT = TypeVar("FrameT", polars.DataFrame, polars.LazyFrame)

#: The row column of every frame: the row number a spreadsheet shows for the record.
#: Columns reconcile writes into results files; dropped from an input so that a results or
#: errors file can be uploaded again as it is.
RESULT_COLUMNS = ("row", "status", "http_status", "error", "attempts", "request")
#: Our column's name when the input has a column of the very same name (``reconcile_status``).
RESULT_PREFIX = "reconcile_"

#: Delimited text (comma, semicolon or tab; ``.txt`` is Excel's "Unicode Text" and tab text).
TEXT_SUFFIXES = (".csv", ".txt")
#: Excel workbooks, read sheet by sheet with their cell types (``.xlsm``: one with macros,
#: which are never run).
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
#: Every input the tool reads: what the console takes as an upload and the inbox takes from
#: its folder; a file named on the command line is read as a workbook by these suffixes and
#: as delimited text otherwise.
INPUT_SUFFIXES = (*TEXT_SUFFIXES, *WORKBOOK_SUFFIXES)


#: The most columns an input file may have (README "Input files"): a correction file has tens;
#: more is a mistake or an attack, refused from the header line before any row is parsed.
MAX_COLUMNS = 1000


def too_wide(path: Path, columns: int) -> InputError:
    """The error for a file whose header row has ``columns`` columns, over MAX_COLUMNS."""
    return InputError(
        f"{path}: the header row has {columns:,} columns, over the {MAX_COLUMNS:,} a correction "
        "file may have. Fix: delete the columns the operation does not use, or split the file."
    )


#: First characters that make Excel run a cell as a formula (OWASP CSV injection guidance).
FORMULA_START = r"[=+\-@\t\r\n]"


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    """The input as read: original headers, plus the canonical name of each known column."""

    path: Path
    frame: pl.DataFrame
    """``__row`` then every input column under its original header, all strings."""
    canonical: Mapping[str, str]
    """Canonical column name -> original header, for the operation's columns found."""
    extra: Sequence[str]
    """Headers of unknown columns, carried through to the results."""
    sha256: str = ""
    """Of the file's bytes, for the run's manifest."""
    cell_errors: pl.DataFrame | None = None
    """``__row``, ``column``, ``acceptable``, ``message``: problems only the file format shows
    (a number cell in an ID column of a spreadsheet; ``acceptable``: a job's ``numeric_ids``
    may accept it for that column)."""
    reuploaded: bool = False
    """The file is one of our results or errors files (it has our output columns)."""
    sheet: str | None = None
    """The workbook sheet read (None for a CSV)."""
    header_row: int = 1
    """The row (as the spreadsheet numbers it) the headers were read from."""
    sum_rows: frozenset[int] = frozenset()
    """The rows with a SUM formula (a workbook's): a trailing one is a total row."""
    notes: Sequence[str] = ()
    """What the reader decided that the analyst should know (a header row below titles, the
    sheet chosen, a total row not sent), one sentence each; the run logs them."""

    def operation_view(self, names: Sequence[str]) -> pl.DataFrame:
        """``__row`` plus the operation's columns under canonical names (null when absent)."""
        return self.frame.select(
            ROW,
            *(
                pl.col(self.canonical[n]).alias(n)
                if n in self.canonical
                else pl.lit(None, pl.String).alias(n)
                for n in names
            ),
        )


def family_column(header: str, families: Sequence[str]) -> str | None:
    """``Metadata.location_id`` -> ``metadata.location_id`` for the family ``metadata``: the
    family matches case-insensitively, the key is kept as written (API keys are case-sensitive).
    The longest family wins (``lineItems.extendedFields`` before ``lineItems``)."""
    for name in sorted(families, key=len, reverse=True):
        prefix = f"{name}."
        if header.casefold().startswith(prefix.casefold()) and header[len(prefix) :].strip():
            return f"{name}.{header[len(prefix) :].strip()}"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class HeaderMap:
    """Which of a file's columns are kept, under which names, and what each means."""

    keep: Sequence[int]
    """Positions of the kept columns (our own output columns of a re-upload are dropped)."""
    names: Sequence[str]
    """Their headers (``column N`` for a blank one)."""
    canonical: Mapping[str, str]
    extra: Sequence[str]
    reuploaded: bool
    first_row: int = 2
    """The row (as the spreadsheet numbers it) of the first record under the header."""

    def apply(self, grid: FrameT) -> FrameT:
        """``grid``'s records (no header line) as ``__row`` plus the kept columns, each under
        its header; lines with no value at all (or only spaces) are dropped."""
        columns = grid.collect_schema().names()
        frame = grid.select(pl.nth(list(self.keep))).rename(
            dict(zip([columns[i] for i in self.keep], self.names, strict=True))
        )
        # Row as a spreadsheet shows it: the first record is the row under the header.
        frame = frame.with_row_index(ROW, offset=self.first_row)
        frame = frame.with_columns(pl.col(ROW).cast(pl.Int64))
        # Lines with no value at all (blank lines, ';;;' from Excel, cells of spaces) are not
        # records.
        blank = (pl.col(n).is_null() | (pl.col(n).str.strip_chars() == "") for n in self.names)
        return frame.filter(~pl.all_horizontal(blank))


def header_map(
    path: Path,
    headers: list[str],
    columns: Sequence[Column],
    families: Sequence[str] = (),
    *,
    first_row: int = 2,
    searched: str = "",
) -> HeaderMap:
    """Map ``headers`` onto ``columns`` (``first_row``: the row number of the first record);
    InputError for a missing required column (``searched``: where a header row naming them was
    looked for) or two headers that mean the same column."""
    if len(headers) > MAX_COLUMNS:
        raise too_wide(path, len(headers))
    wanted = {header_key(c.name): c.name for c in columns}
    required = [c.name for c in columns if c.required]
    canonical: dict[str, str] = {}
    names: list[str] = []
    seen: set[str] = set()
    keep: list[int] = []
    ours = {header_key(r) for r in RESULT_COLUMNS}
    reuploaded = False
    claimed = {
        wanted[header_key(h)]
        for h in headers
        if h and h not in RESULT_COLUMNS and header_key(h) in wanted
    }
    for position, header in enumerate(headers):
        name = header or f"column {position + 1}"
        target = wanted.get(header_key(name)) or family_column(name, families)
        if name.startswith(RESULT_PREFIX) or (
            header_key(name) in ours
            and (target is None or (name in RESULT_COLUMNS and target in claimed))
        ):
            # Our own output columns: a results or errors file can be uploaded again as it is.
            # (An operation's own "Status" column is kept; our "status" beside it is dropped.)
            reuploaded = True
            continue
        if target is not None:
            if target in canonical:
                raise InputError(
                    f"{path}: columns {canonical[target]!r} and {name!r} both mean {target!r}. "
                    "Fix: delete or rename one of them."
                )
            canonical[target] = name
        if name in seen:
            raise InputError(f"{path}: two columns are called {name!r}. Fix: rename one.")
        seen.add(name)
        names.append(name)
        keep.append(position)
    missing = [c for c in required if c not in canonical]
    if missing:
        where = f" (no row among {searched} names them)" if searched else ""
        raise InputError(
            f"{path}: required column(s) missing: {', '.join(missing)}{where}. "
            f"Fix: add a header row naming them (found: {', '.join(headers)})."
        )
    mapped = set(canonical.values())
    extra = [n for n in names if n not in mapped]
    return HeaderMap(keep, names, canonical, extra, reuploaded, first_row)
