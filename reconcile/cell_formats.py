"""The number format of a workbook's cells, which the reader in use (fastexcel) does not expose.

A cell names its style (``<c r="B2" s="3">``); the style (``cellXfs`` in ``xl/styles.xml``)
names a number format (``numFmtId``), built in (ids 0-163, ECMA-376 18.8.30) or declared in
``numFmts``. From it: which number cells a zero-padding format (``000000``) shows as
``000456``, and what Excel shows for a cell that is refused, for its message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import posixpath
import re
import zipfile
from collections.abc import Mapping
from xml.etree import ElementTree

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PACKAGE_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"

#: The built-in formats a style may name by id alone (ECMA-376 Part 1, 18.8.30).
BUILT_IN = {
    0: "General",
    1: "0",
    2: "0.00",
    3: "#,##0",
    4: "#,##0.00",
    9: "0%",
    10: "0.00%",
    11: "0.00E+00",
    12: "# ?/?",
    13: "# ??/??",
    14: "mm-dd-yy",
    15: "d-mmm-yy",
    16: "d-mmm",
    17: "mmm-yy",
    22: "m/d/yy h:mm",
    37: "#,##0 ;(#,##0)",
    38: "#,##0 ;[Red](#,##0)",
    39: "#,##0.00;(#,##0.00)",
    40: "#,##0.00;[Red](#,##0.00)",
    48: "##0.0E+0",
    49: "@",
}
#: A format that pads a whole number with zeros to its width: ``000000`` shows 456 as 000456.
ZERO_PADDED = re.compile(r"^0{2,}$")
_CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True, slots=True)
class SheetFormats:
    """The number formats of one sheet's cells, where not General."""

    codes: Mapping[tuple[int, int], str]
    """(sheet row, 1-based; column, 0-based) -> format code, for cells styled other than General."""
    header_row: int
    """The sheet row of the first cell with a value (the reader's first row)."""
    merged: tuple[tuple[int, int, int, int], ...] = ()
    """Merged ranges: (first row, first column, last row, last column); rows 1-based, columns
    0-based."""
    sums: frozenset[int] = frozenset()
    """The sheet rows with a cell whose formula starts with SUM( (a total row)."""

    def padded(self) -> dict[tuple[int, int], int]:
        """(row, column) -> width, for the cells a zero-padding format shows padded."""
        return {cell: len(code) for cell, code in self.codes.items() if ZERO_PADDED.match(code)}


def _xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element | None:
    try:
        return ElementTree.fromstring(archive.read(name))
    except (KeyError, ElementTree.ParseError):
        return None


def _style_codes(archive: zipfile.ZipFile) -> dict[int, str]:
    """Style index (a cell's ``s``) -> its number format code, for styles other than General."""
    styles = _xml(archive, "xl/styles.xml")
    if styles is None:
        return {}
    declared = dict(BUILT_IN)
    for fmt in styles.iter(f"{_MAIN}numFmt"):
        if fmt.get("numFmtId", "").isdigit():
            declared[int(fmt.get("numFmtId", "0"))] = fmt.get("formatCode", "General")
    xfs = styles.find(f"{_MAIN}cellXfs")
    codes = {}
    for index, xf in enumerate(xfs.iter(f"{_MAIN}xf") if xfs is not None else ()):
        code = declared.get(int(xf.get("numFmtId", "0") or 0), "General")
        if code.casefold() != "general":
            codes[index] = code
    return codes


def sheet_names(raw: bytes) -> list[str]:
    """The names of a workbook's sheets, in the order the workbook shows them (read from
    ``xl/workbook.xml`` alone: no sheet is parsed)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        book = _xml(archive, "xl/workbook.xml")
    if book is None:
        return []
    return [s.get("name", "") for s in book.iter(f"{_MAIN}sheet")]


def _sheet_part(archive: zipfile.ZipFile, sheet: str | int) -> str | None:
    """The zip part of the sheet named ``sheet`` (or at that position), from workbook.xml and
    its relationships."""
    book = _xml(archive, "xl/workbook.xml")
    rels = _xml(archive, "xl/_rels/workbook.xml.rels")
    if book is None or rels is None:
        return None
    sheets = list(book.iter(f"{_MAIN}sheet"))
    chosen = (
        next((s for s in sheets if s.get("name") == sheet), None)
        if isinstance(sheet, str)
        else (sheets[sheet] if sheet < len(sheets) else None)
    )
    if chosen is None:
        return None
    rel_id = chosen.get(f"{_REL}id")
    target = next(
        (
            r.get("Target", "")
            for r in rels.iter(f"{_PACKAGE_REL}Relationship")
            if r.get("Id") == rel_id
        ),
        "",
    )
    if not target:
        return None
    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"xl/{target}")


def _column_index(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number - 1


_VALUE = re.compile(rb"<(?:\w+:)?(?:v|is)>")
_ROW = re.compile(rb'<(?:\w+:)?row\b[^>]*?\sr="([0-9]+)"')


def _first_value_row(data: bytes) -> int | None:
    """The row of the first cell with a value in ``data`` (a start of the sheet's XML)."""
    value = _VALUE.search(data)
    if value is None:
        return None
    rows = list(_ROW.finditer(data, 0, value.start()))
    return int(rows[-1].group(1)) if rows else 1


_MERGE = re.compile(
    rb'<(?:\w+:)?mergeCell\b[^>]*?\sref="([A-Z]{1,3})([0-9]+):([A-Z]{1,3})([0-9]+)"'
)
#: A cell whose formula is a SUM (Excel and xlsxwriter write ``<f>``, Calc ``<f aca="false">``).
_SUM = re.compile(
    rb'<(?:\w+:)?c\b[^>]*?\sr="[A-Z]{1,3}([0-9]+)"[^>]*>\s*<(?:\w+:)?f\b[^>]*>\s*(?:_xlfn\.)?SUM\(',
    re.IGNORECASE,
)


def _merges(data: bytes) -> list[tuple[int, int, int, int]]:
    return [
        (int(m[2]), _column_index(m[1].decode()), int(m[4]), _column_index(m[3].decode()))
        for m in _MERGE.finditer(data)
    ]


def sheet_formats(raw: bytes, sheet: str | int) -> SheetFormats:
    """The formats of ``sheet``'s cells styled other than General, its merged ranges and the
    rows holding a SUM formula, read through the sheet's XML a chunk at a time (only cells
    with such a style are kept)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        styles = _style_codes(archive)
        part = _sheet_part(archive, sheet)
        if part is None:
            return SheetFormats({}, 1)
        alternatives = b"|".join(str(s).encode() for s in sorted(styles)) or b"(?!)"
        # Attributes in any order: the cell's reference and one of the styles of interest.
        cell = re.compile(
            rb'<(?:\w+:)?c\b(?=[^>]*?\sr="([A-Z]{1,3})([0-9]+)")(?=[^>]*?\ss="('
            + alternatives
            + rb')")'
        )
        codes: dict[tuple[int, int], str] = {}
        merged: list[tuple[int, int, int, int]] = []
        sums: set[int] = set()
        header_row: int | None = None
        with archive.open(part) as member:
            carry = b""
            while chunk := member.read(_CHUNK):
                data = carry + chunk
                # An unfinished tag at the end is read with the next chunk.
                cut = data.rfind(b"<")
                if cut < 0 or data.find(b">", cut) >= 0:
                    cut = len(data)
                data, carry = data[:cut], data[cut:]
                if header_row is None:
                    header_row = _first_value_row(data)
                for found in cell.finditer(data):
                    row, column = int(found.group(2)), _column_index(found.group(1).decode())
                    codes[(row, column)] = styles[int(found.group(3))]
                if b"mergeCell" in data:
                    merged += _merges(data)
                if b"SUM(" in data:  # Excel and Calc store function names in capitals
                    sums.update(int(m.group(1)) for m in _SUM.finditer(data))
    return SheetFormats(codes, header_row or 1, tuple(merged), frozenset(sums))


def shown(value: float, code: str) -> str:
    """What Excel shows for the number ``value`` under the format ``code`` (the formats a
    correction file's cells have: General, zero-padded, fixed decimals, thousands, scientific,
    percent, text; any other is shown as General)."""
    section = re.sub(r'\[[^\]]*\]|"[^"]*"|\\.|_.|\*.', "", code.split(";")[0]).strip()
    if ZERO_PADDED.match(section) and float(value).is_integer():
        digits = str(abs(int(value))).zfill(len(section))
        return f"-{digits}" if value < 0 else digits
    scientific = re.fullmatch(r"[0#]+(?:\.(0+))?E\+0+", section)
    if scientific:
        return f"{value:.{len(scientific.group(1) or '')}E}"
    fixed = re.fullmatch(r"(#,##)?0(?:\.(0+))?(%)?", section)
    if fixed:
        places = len(fixed.group(2) or "")
        scaled = value * 100 if fixed.group(3) else value
        text = f"{scaled:,.{places}f}" if fixed.group(1) else f"{scaled:.{places}f}"
        return text + (fixed.group(3) or "")
    return general(value)


def general(value: float) -> str:
    """Excel's General format in a column of the default width (11 characters): whole numbers
    up to 11 digits as they are, others to 10 significant digits, and larger or smaller ones
    in scientific notation with 6 (4.00012E+18)."""
    if float(value).is_integer() and abs(value) < 1e11:
        return str(int(value))
    if 1e-4 <= abs(value) < 1e11:
        text = f"{value:.10g}"
        if len(text) <= 11:
            return text
    mantissa, exponent = f"{value:.5E}".split("E")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}E{exponent}"


def shown_date(value: dt.date, code: str) -> str:
    """What Excel shows for a date under a day/month/year ``code`` (else DD/MM/YYYY)."""
    section = re.sub(r'\[[^\]]*\]|"[^"]*"|\\', "", code.split(";")[0])
    if re.search(r"[hHsS]", section) or not re.search(r"[dDmMyY]", section):
        return value.strftime("%d/%m/%Y")
    tokens = {
        "yyyy": "%Y",
        "yy": "%y",
        "mmmm": "%B",
        "mmm": "%b",
        "mm": "%m",
        "m": "%-m",
        "dddd": "%A",
        "ddd": "%a",
        "dd": "%d",
        "d": "%-d",
    }
    pattern = re.sub(
        r"y{4}|y{2}|m{3,4}|m{1,2}|d{3,4}|d{1,2}",
        lambda m: tokens.get(m.group(0).lower(), m.group(0)),
        section,
        flags=re.IGNORECASE,
    )
    return value.strftime(pattern)
