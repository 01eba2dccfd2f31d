"""An .xlsx sheet's cells judged by their type and number format, not by how their text looks.

A text cell is what was typed. A number cell whose format pads it with zeros (``000000``) reads
as Excel shows it (``000456``), in every column. In an ID column (``Column.kind`` ``id``: what
the API takes as a string), a number, date or boolean cell is refused: the spreadsheet parsed
what was typed and may have dropped leading zeros (``000456`` -> 456) or rewritten it (``12E3``
-> 12000); a job's ``numeric_ids`` accepts whole numbers in the columns it names. In another
text column a number cell is refused unless it is exactly its text (a spreadsheet keeps 15
digits and may write an exponent). A date cell in a date column becomes DD/MM/YYYY, unless the
column shows the file was read in a month-first locale. The cell types come from fastexcel: read
as booleans, only number and boolean cells are non-null; read as dates, only number and date
cells are. Number formats come from the workbook's styles (:mod:`reconcile.cell_formats`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from reconcile import cell_formats
from reconcile.columns import ROW
from reconcile.header_row import header_key
from reconcile.lazy import pl
from reconcile.operations.base import Column
from reconcile.table import family_column

if TYPE_CHECKING:
    from fastexcel import ExcelReader


@dataclasses.dataclass(frozen=True, slots=True)
class Cells:
    """Where the frame's cells are in the sheet, and their number formats."""

    formats: cell_formats.SheetFormats
    sheet_columns: Sequence[int]
    """The sheet column (0-based) of each of the frame's columns."""
    header_row: int
    """The sheet row (1-based) of the header."""
    skip: int
    """The reader's rows above the frame's first row (title rows and the header)."""
    styled: pl.DataFrame = dataclasses.field(init=False)
    """``row``, ``column``, ``code``: the cells styled other than General, once as a frame."""

    def __post_init__(self) -> None:
        cells = self.formats.codes
        frame = pl.DataFrame(
            {
                "row": [r for r, _ in cells],
                "column": [c for _, c in cells],
                "code": list(cells.values()),
            },
            schema={"row": pl.Int64, "column": pl.Int64, "code": pl.String},
        )
        object.__setattr__(self, "styled", frame)

    def first_row(self) -> int:
        """The sheet row of the frame's first row (the one under the header)."""
        return self.header_row + 1

    def ref(self, position: int, height: int) -> pl.Series:
        """The cell reference (``B7``) of each row of the column at ``position``."""
        rows = pl.int_range(self.first_row(), height + self.first_row(), eager=True)
        return _letters(self.sheet_columns[position]) + rows.cast(pl.String)

    def codes(self, position: int, height: int) -> pl.Series:
        """Per row, the number format code of the column's cell (General where none)."""
        styled = self.styled.filter(pl.col("column") == self.sheet_columns[position])
        index = styled.get_column("row") - self.first_row()
        inside = (index >= 0) & (index < height)
        codes = pl.repeat("General", height, dtype=pl.String, eager=True)
        return codes.scatter(index.filter(inside), styled.get_column("code").filter(inside))

    def widths(self, position: int, height: int) -> pl.Series:
        """Per row, the width of a zero-padding format on the column's cell (null: none)."""
        codes = self.codes(position, height)
        padded = codes.str.contains(cell_formats.ZERO_PADDED.pattern)
        return pl.select(
            pl.when(pl.lit(padded)).then(pl.lit(codes).str.len_chars().cast(pl.Int64))
        ).to_series()


def _letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_types(
    workbook: ExcelReader,
    chosen: str | int,
    text: pl.DataFrame,
    grid: pl.DataFrame,
    headers: Sequence[str],
    judged: Mapping[int, tuple[str, str]],
    where: Cells,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Zero-padded number cells as Excel shows them, date cells of date columns as DD/MM/YYYY,
    and the problems cell types show (number cells in ID columns, rounded number cells, swapped
    dates): the grid with its fixes, and (row, column, acceptable, message) problems."""
    padded = {p for p in range(text.width) if where.widths(p, text.height).is_not_null().any()}
    inspected = sorted(set(judged) | padded)
    if not inspected:
        return grid, pl.DataFrame(schema=PROBLEMS)
    originals = [text.columns[p] for p in inspected]
    # Cell types, which a text read hides: read as booleans, a number cell is non-null (a
    # text cell is null, digits or not); read as dates, a date cell is non-null.
    as_bool, as_date = (
        workbook.load_sheet(
            chosen, header_row=None, dtypes=dict.fromkeys(originals, kind), use_columns=originals
        )
        .to_polars()
        .slice(where.skip)
        for kind in ("boolean", "date")
    )
    fixes, flagged = [], [pl.DataFrame(schema=PROBLEMS)]
    for position in inspected:
        original, name = text.columns[position], f"column_{position}"
        shown = text.get_column(original)
        boolean = as_bool.get_column(original).is_not_null() & shown.is_in(["true", "false"])
        number = as_bool.get_column(original).is_not_null() & ~boolean
        date = as_date.get_column(original).is_not_null() & as_bool.get_column(original).is_null()
        widths = where.widths(position, text.height)
        padding = number & widths.is_not_null() & shown.str.contains(_LOSSLESS_NUMBER)
        if position in padded:
            fixes.append(_padded(name, padding, widths))
            # As Excel shows them: a code shown 000456 says the column's codes have zeros.
            shown = grid.select(fixes[-1]).to_series()
        kind, canonical = judged.get(position, ("", ""))
        if kind == "date":
            fixes.append(
                pl.when(pl.lit(date))
                .then(pl.lit(as_date.get_column(original)).dt.strftime("%d/%m/%Y"))
                .otherwise(pl.col(name))
                .alias(name)
            )
            flagged.append(_swapped_dates(headers[position], canonical, shown, date, where))
        elif kind == "id":
            cells = Typed(shown, number & ~padding, date, boolean, as_date.get_column(original))
            flagged.append(_not_text(headers[position], canonical, cells, where, position))
        elif kind == "text":
            cells = Typed(shown, number & ~padding, date, boolean, as_date.get_column(original))
            flagged.append(_damaged_numbers(headers[position], canonical, cells, where, position))
    return grid.with_columns(fixes), pl.concat(flagged)


#: The problems a workbook's cells show: the row, the operation's column, whether a job's
#: ``numeric_ids`` may accept it (a whole number the cell holds exactly), and the message.
PROBLEMS = {ROW: pl.Int64, "column": pl.String, "acceptable": pl.Boolean, "message": pl.String}


def _padded(name: str, padding: pl.Series, widths: pl.Series) -> pl.Expr:
    """The column with its zero-padded number cells as Excel shows them (456 -> 000456)."""
    column = pl.col(name)
    digits = column.str.strip_chars_start("-").str.zfill(pl.lit(widths))
    sign = pl.when(column.str.starts_with("-")).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(pl.lit(padding)).then(sign + digits).otherwise(column).alias(name)


#: A number cell whose value text is exactly what was typed: a whole number of at most 15
#: digits (a spreadsheet keeps 15 significant digits), no exponent, no decimals.
_LOSSLESS_NUMBER = r"^-?[1-9][0-9]{0,14}$|^0$"


#: A date written day first that cannot be read month first (day above 12): DD/MM/YYYY text a
#: spreadsheet in a month-first locale left as text while it turned the others into dates.
_DAY_FIRST_ONLY = r"^(1[3-9]|2[0-9]|3[01])/(0?[1-9]|1[0-2])/[0-9]{4}$"


def judged_columns(
    headers: Sequence[str],
    columns: Sequence[Column],
    families: Sequence[str],
    id_families: Sequence[str] = (),
) -> dict[int, tuple[str, str]]:
    """Positions of the columns whose cells a spreadsheet may have changed, with their kind and
    canonical name: ``date`` columns, ``id`` columns (and text-typed columns of ``id_families``)
    and every other column the API reads as text (``text``): not the numbers an API reads as
    numbers (amounts, quantities)."""
    by_key = {header_key(c.name): c for c in columns}
    judged: dict[int, tuple[str, str]] = {}
    for position, header in enumerate(headers):
        column = by_key.get(header_key(header))
        if column is not None:
            if column.kind != "number":
                kind = column.kind if column.kind in ("date", "id") else "text"
                judged[position] = (kind, column.name)
            continue
        family = family_column(header, families)
        if family is not None and family.rpartition(":")[2] in (family, "text"):
            is_id = family.partition(".")[0] in id_families
            judged[position] = ("id" if is_id else "text", family)
    return judged


@dataclasses.dataclass(frozen=True, slots=True)
class Typed:
    """One column's cells by type (each a boolean per row), with their text and date reads."""

    shown: pl.Series
    number: pl.Series
    date: pl.Series
    boolean: pl.Series
    dates: pl.Series


def _not_text(
    header: str, canonical: str, cells: Typed, where: Cells, position: int
) -> pl.DataFrame:
    """Number, date and boolean cells in an ID column: each names its cell, what it holds and
    what Excel shows. A whole number the cell holds exactly (and no text cell beside it with a
    leading zero) is ``acceptable``: a job's ``numeric_ids`` may accept it."""
    height = cells.shown.len()
    zero_led = (~cells.number & cells.shown.str.contains(r"^0[0-9]+$").fill_null(False)).any()
    exact = cells.shown.str.contains(_LOSSLESS_NUMBER).fill_null(False) & (not zero_led)
    frame = pl.DataFrame(
        {
            ROW: pl.int_range(where.first_row(), height + where.first_row(), eager=True),
            "ref": where.ref(position, height),
            "shown": cells.shown,
            "code": where.codes(position, height),
            "number": cells.number,
            "date": cells.date,
            "boolean": cells.boolean,
            "dates": cells.dates,
            "exact": exact,
        }
    ).filter(pl.col("number") | pl.col("date") | pl.col("boolean"))
    if frame.is_empty():
        return pl.DataFrame(schema=PROBLEMS)
    held = [
        _held(
            row["shown"],
            row["code"],
            boolean=row["boolean"],
            day=row["dates"] if row["date"] else None,
        )
        for row in frame.iter_rows(named=True)
    ]
    fix = (
        "the spreadsheet may have dropped leading zeros or rewritten it. Format the column as "
        "Text and type the value again"
    )
    accept = f'. If these IDs are truly numbers, set numeric_ids.{canonical} = "accept" in the job'
    return frame.select(
        pl.col(ROW).cast(pl.Int64),
        pl.lit(canonical).alias("column"),
        (pl.col("number") & pl.col("exact")).alias("acceptable"),
        (
            pl.lit(f"{header}: cell ")
            + pl.col("ref")
            + pl.Series(held, dtype=pl.String)
            + pl.lit(f": {fix}")
            + pl.when(pl.col("number") & pl.col("exact")).then(pl.lit(accept)).otherwise(pl.lit(""))
        ).alias("message"),
    )


def _held(shown: str, code: str, *, boolean: bool = False, day: dt.date | None = None) -> str:
    """`` holds ... (Excel shows ...), stored as a number`` for one refused cell: its text
    read, its number format ``code``; a boolean cell, or a date cell holding ``day``."""
    if boolean:
        value = shown.upper()
        return f" holds {value} (Excel shows {value}), stored as a boolean"
    if day is not None:
        excel = cell_formats.shown_date(day, code)
        return f" holds the date {day:%d/%m/%Y} (Excel shows {excel}), stored as a date"
    return (
        f" holds the number {shown} (Excel shows "
        f"{cell_formats.shown(float(shown), code)}), stored as a number"
    )


def _damaged_numbers(
    header: str, canonical: str, cells: Typed, where: Cells, position: int
) -> pl.DataFrame:
    """Number cells in a column the API reads as text, unless the number is exactly its text:
    past 15 digits a spreadsheet has rounded them, an exponent or decimals are not what was
    typed, and beside text cells with leading zeros a number has lost its own. Each message
    names the cell, what it holds and what Excel shows. A text cell is never flagged, digits or
    not (a column formatted as Text). A leading zero that a spreadsheet dropped from a column
    of numbers only leaves no trace in the file: that cannot be seen."""
    shown, number = cells.shown, cells.number
    # Text cells of digits with a leading zero say the column's values have leading zeros: a
    # number cell beside them has probably lost its own, whatever its value.
    zero_led = ~number & shown.str.contains(r"^0[0-9]+$").fill_null(False)
    exact = shown.str.contains(_LOSSLESS_NUMBER).fill_null(False)
    hit = number & (zero_led.any() | ~exact)
    if not hit.any():
        return pl.DataFrame(schema=PROBLEMS)
    height = shown.len()
    frame = pl.DataFrame(
        {
            ROW: pl.int_range(where.first_row(), height + where.first_row(), eager=True),
            "ref": where.ref(position, height),
            "shown": shown,
            "code": where.codes(position, height),
            "exact": exact,
            "hit": hit,
        }
    ).filter("hit")
    held = [_held(row["shown"], row["code"]) for row in frame.iter_rows(named=True)]
    if zero_led.any():
        sample = shown.filter(zero_led)[0]
        why = (
            f": the column's other codes are text with leading zeros (such as {sample}), so "
            "this one has probably lost its own"
        )
    else:
        why = (
            " that a spreadsheet changed (it keeps 15 digits and may write an exponent or decimals)"
        )
    fix = (
        "; the API reads this value as text. Format the column as Text, type or paste the "
        "value again from the source and save"
    )
    return frame.select(
        pl.col(ROW).cast(pl.Int64),
        pl.lit(canonical).alias("column"),
        pl.lit(False).alias("acceptable"),
        (
            pl.lit(f"{header}: cell ")
            + pl.col("ref")
            + pl.Series(held, dtype=pl.String)
            + pl.lit(why + fix)
        ).alias("message"),
    )


def _swapped_dates(
    header: str, canonical: str, shown: pl.Series, date: pl.Series, where: Cells
) -> pl.DataFrame:
    """Real date cells beside text dates that only read day first (31/12/2026): the file was
    opened in a month-first locale, which read 01/02/2027 as 2 January and left 31/12/2026 as
    text. Its real dates may have day and month swapped, so each is refused."""
    day_first_text = (~date & shown.str.contains(_DAY_FIRST_ONLY).fill_null(False)).any()
    hit = date & day_first_text
    rows = pl.int_range(where.first_row(), hit.len() + where.first_row(), eager=True)
    message = (
        f"{header}: is a date cell in a column where other dates stayed text (such as "
        "31/12/2026): the file was read in a month-first locale, so this date's day and "
        "month may be swapped. Format the column as Text and type the dates as DD/MM/YYYY"
    )
    return (
        pl.DataFrame({ROW: rows, "hit": hit})
        .filter("hit")
        .select(
            pl.col(ROW).cast(pl.Int64),
            pl.lit(canonical).alias("column"),
            pl.lit(False).alias("acceptable"),
            pl.lit(message).alias("message"),
        )
    )
