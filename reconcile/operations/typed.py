"""Typed values for JSON objects built from column families (``metadata.<key>``).

A cell is text; an API's metadata schema may want a number, a boolean, an array or null. The
header says which, after a colon: ``metadata.age:number``. The types:

=========  ==============================================  ===========================
type       what a cell may hold                            sent as
=========  ==============================================  ===========================
text       anything (the default)                          a JSON string
number     a JSON number: ``12``, ``-3.5``, ``1e3``        that number, as written
integer    a whole number, at most 2^53 (JSON's exact)     that number
boolean    true/false, yes/no, 1/0 (any case)              ``true`` / ``false``
json       any JSON value: ``["L2"]``, ``{"a": 1}``,      that value, as written
           ``null`` (clears the key)
=========  ==============================================  ===========================

An empty cell leaves the key out, whatever the type. ``metadata.a:b:text`` is the key ``a:b``:
a key with a colon ends with its type.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import TypeAlias

from reconcile.exceptions import InputError
from reconcile.lazy import pa, pl
from reconcile.operations import rules

TYPES = ("text", "number", "integer", "boolean", "json")
NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
INTEGER = r"^-?(0|[1-9][0-9]*)$"
TRUE = ("true", "yes", "1")
FALSE = ("false", "no", "0")
_EXACT_DIGITS = len(str(2**53))


@dataclasses.dataclass(frozen=True, slots=True)
class RawJson:
    """An expression yielding JSON text, put into a JSON object as it is."""

    expr: pl.Expr


JsonValue: TypeAlias = "pl.Expr | RawJson"


def split(key: str) -> tuple[str, str]:
    """``age:number`` -> (``age``, ``number``); no colon -> (key, ``text``). A colon followed by
    something that is not a type is refused: a typo must not become a key."""
    name, colon, kind = key.rpartition(":")
    if not colon:
        return key, "text"
    if kind not in TYPES:
        raise InputError(
            f"column '{key}': '{kind}' after the colon is not a value type ({', '.join(TYPES)}); "
            f"fix the header, or end it with ':text' if the key itself has a colon"
        )
    return name, kind


def value(column: pl.Expr, kind: str) -> JsonValue:
    """What a checked cell of ``kind`` becomes in the JSON object."""
    if kind == "text":
        return column
    if kind == "boolean":
        truth = column.str.to_lowercase().is_in(TRUE)
        return RawJson(
            pl.when(column.is_null())
            .then(None)
            .when(truth)
            .then(pl.lit("true"))
            .otherwise(pl.lit("false"))
        )
    return RawJson(column)


def _finite(text: str) -> float:
    """A JSON number that a double holds (``1e400`` is refused: parsers make it Infinity)."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is beyond a JSON number's range")
    return number


def _not_json(text: str) -> None:
    raise ValueError(f"{text} is not JSON")  # NaN, Infinity: Python reads them, JSON has none


def _is_json(values: pl.Series) -> pl.Series:
    """Whether each cell parses as standard JSON (RFC 8259: no NaN or Infinity, numbers a
    double holds). Python's parser, on this column's non-empty cells only: polars reads JSON
    only into one fixed type, and a metadata cell may hold any."""

    def parses(text: str) -> bool:
        try:
            json.loads(text, parse_constant=_not_json, parse_float=_finite)
        except (ValueError, RecursionError):
            return False
        return True

    return values.map_elements(parses, return_dtype=pl.Boolean, skip_nulls=True)


def checks(kind: str) -> list[pa.Check]:
    """The checks of a family cell of ``kind`` (empty cells are not checked)."""
    if kind == "number":
        return [
            rules.check(
                "is not a number: write digits with a dot for decimals, e.g. 12 or -3.5",
                lambda c: c.str.contains(NUMBER),
            ),
            rules.check(
                "is beyond the range of a JSON number (at most about 1.8e308)",
                lambda c: ~c.str.contains(NUMBER) | c.cast(pl.Float64, strict=False).is_finite(),
            ),
        ]
    if kind == "integer":
        return [
            rules.check(
                "is not a whole number: write digits only, e.g. 12 or -3",
                lambda c: c.str.contains(INTEGER),
            ),
            rules.check(
                "is too large for a JSON number to hold exactly (at most 2^53)",
                lambda c: (
                    ~c.str.contains(INTEGER)
                    | (c.str.strip_chars_start("-").str.len_chars() < _EXACT_DIGITS)
                    | (
                        (c.str.strip_chars_start("-").str.len_chars() == _EXACT_DIGITS)
                        & (c.str.strip_chars_start("-") <= str(2**53))
                    )
                ),
            ),
        ]
    if kind == "boolean":
        return [
            rules.check(
                "is not yes or no: write true/false, yes/no or 1/0",
                lambda c: c.str.to_lowercase().is_in((*TRUE, *FALSE)),
            )
        ]
    if kind == "json":
        return [
            rules.check(
                'is not JSON: write e.g. ["L2"], {"floor": 2}, 5, true, "text" or null',
                lambda c: c.map_batches(_is_json, return_dtype=pl.Boolean),
            )
        ]
    return []


def family_columns_schema(
    family_columns: Sequence[str], families: Sequence[str]
) -> dict[str, pa.Column]:
    """pandera columns for the typed family columns of a file (text ones need none)."""
    columns = {}
    for name in family_columns:
        family = max((f for f in families if name.startswith(f"{f}.")), key=len, default=None)
        if family is None:
            continue
        _, kind = split(name[len(family) + 1 :])
        if kind != "text":
            columns[name] = pa.Column(str, nullable=True, checks=checks(kind))
    return columns
