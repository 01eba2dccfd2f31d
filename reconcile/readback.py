"""Read-back: what an operation declares to prove that the API now holds what a row wrote, and
the pure comparison of a read's answer with it (no I/O; :mod:`reconcile.verification` does the reads).

An operation's :meth:`~reconcile.operations.base.Operation.read_back` turns one request (its
path and JSON body: exactly what was sent) into a :class:`ReadPlan`: the GET that reads the
record, which record of its answer is the one (a bill-number read lists several), and one
:class:`Expect` per written value with where the answer holds it and how to compare it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
from collections.abc import Callable, Sequence
from typing import TypeAlias

from reconcile.json_types import JSON

#: What text comparison trims (JavaScript's trim and Unicode white space).
_SPACE = "\t\n\v\f\r \x85\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


class Kind(enum.StrEnum):
    """How a written value and a read value are compared."""

    TEXT = "text"  # trimmed text, case kept
    CASELESS = "caseless"  # trimmed text where the API ignores case (enumerations)
    NUMBER = "number"  # numbers as numbers: "10.50" == 10.5
    DATE = "date"  # ISO 8601 instants in one form (UTC)
    VALUE = "value"  # a number if both are numbers, else trimmed text (free-form fields)


class VerifyStatus(enum.StrEnum):
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"
    CONFIRMED = "confirmed"
    UNVERIFIABLE = "unverifiable"
    READ_FAILED = "read_failed"


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """A path step into a list: the element whose ``key`` (a dotted path in the element)
    equals ``value``."""

    key: str
    value: JSON


PathStep = str | Item


@dataclasses.dataclass(frozen=True, slots=True)
class Expect:
    field: str
    """How ``verify_detail`` names it (``status``, ``metadata.tier``, ``lineItems[sku_1].outlierStatus``)."""
    wrote: JSON
    path: tuple[PathStep, ...]
    """Where the answer's record holds it."""
    kind: Kind = Kind.TEXT
    item: str | None = None
    """The item (line item) it belongs to: only the row of that item is marked by it."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReadPlan:
    """One GET that reads back what one request wrote."""

    path: str
    """Relative to the job's base URL, query included; rows with the same path share one read."""
    expects: tuple[Expect, ...]
    not_verifiable: tuple[str, ...] = ()
    """Written fields this read does not return (named, never guessed)."""
    pick: Callable[[JSON], JSON] | None = None
    """The record within the answer (None: the answer is the record); raises
    :class:`Ambiguous` when several match; returns None when none does (not found)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Difference:
    field: str
    wrote: JSON
    read: JSON
    item: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: wrote {shown(self.wrote)}, read {shown(self.read)}"


class Ambiguous(Exception):
    """The answer holds several records that could be the one written."""


class _Absent(enum.Enum):
    """What a path reads where a step is missing: apart from a JSON ``null`` that is there."""

    ABSENT = enum.auto()


_ABSENT = _Absent.ABSENT
#: A value read at a path, or its absence.
Found: TypeAlias = JSON | _Absent


def shown(value: Found) -> str:
    if value is _ABSENT or value is None:
        return "nothing"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def lookup(record: JSON, path: Sequence[PathStep]) -> Found:
    """The value at ``path`` in ``record`` (``_ABSENT`` when any step is missing)."""
    current: Found = record
    for step in path:
        if isinstance(step, Item):
            if not isinstance(current, list):
                return _ABSENT
            current = next(
                (
                    e
                    for e in current
                    if normal(lookup(e, step.key.split(".")), Kind.VALUE)
                    == normal(step.value, Kind.VALUE)
                ),
                _ABSENT,
            )
        elif isinstance(current, dict) and step in current:
            current = current[step]
        else:
            return _ABSENT
        if current is _ABSENT:
            return _ABSENT
    return current


def _number(value: Found) -> decimal.Decimal | None:
    if isinstance(value, bool) or value is None or value is _ABSENT:
        return None
    try:
        number = decimal.Decimal(str(value).strip(_SPACE))
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _instant(value: Found) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip(_SPACE).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def normal(value: Found, kind: Kind) -> object:
    """``value`` in the one form compared (the raw value when it has no such form)."""
    if value is _ABSENT or value is None:
        return None
    if kind is Kind.NUMBER or kind is Kind.VALUE:
        number = _number(value)
        if number is not None:
            return number.normalize()
        if kind is Kind.NUMBER:
            return value
    if kind is Kind.DATE:
        return _instant(value) or value
    if isinstance(value, str):
        text = value.strip(_SPACE)
        return text.upper() if kind is Kind.CASELESS else text
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def differences(record: JSON, expects: Sequence[Expect]) -> list[Difference]:
    """Each expected value the record does not hold, with both values."""
    found = []
    for expect in expects:
        read = lookup(record, expect.path)
        if normal(read, expect.kind) != normal(expect.wrote, expect.kind):
            found.append(
                Difference(
                    expect.field, expect.wrote, None if read is _ABSENT else read, expect.item
                )
            )
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class RowVerdict:
    status: VerifyStatus
    detail: str


def row_verdict(plan: ReadPlan, found: list[Difference], row_item: str | None) -> RowVerdict:
    """One row's verdict from its record's differences: a record-level difference marks every
    row of the record, an item's only the row that wrote that item."""
    mine = [d for d in found if d.item is None or d.item == row_item]
    unverifiable = [
        f"{name}: not verifiable (the read does not return it)" for name in plan.not_verifiable
    ]
    if mine:
        return RowVerdict(VerifyStatus.MISMATCH, "; ".join([*map(str, mine), *unverifiable]))
    checked = [e for e in plan.expects if e.item is None or e.item == row_item]
    if not checked:
        return RowVerdict(
            VerifyStatus.UNVERIFIABLE, "; ".join(unverifiable) or "nothing to read back"
        )
    return RowVerdict(VerifyStatus.VERIFIED, "; ".join(unverifiable))


def confirmation(sent: Sequence[Expect], answer: JSON) -> RowVerdict:
    """Returning.AI: no read exists; the write's own answer echoing every value sent is a
    confirmation (never a verification), else the row is unverifiable."""
    if answer is None:
        return RowVerdict(
            VerifyStatus.UNVERIFIABLE, "no read documented, and no answer of the write kept"
        )
    found = differences(answer, sent)
    if found:
        return RowVerdict(
            VerifyStatus.UNVERIFIABLE,
            "no read documented; the write's answer differs: " + "; ".join(map(str, found)),
        )
    return RowVerdict(
        VerifyStatus.CONFIRMED, "the write's answer echoes every value sent (no read documented)"
    )
