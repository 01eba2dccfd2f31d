"""Reusable pandera checks, each a vectorised polars expression with a plain-words message.

A check passes where its expression is true; nulls (cells not provided) are not checked here:
whether a column is required is the schema's ``nullable``. Messages say what is wrong and how to
fix it; validate.py puts the column header and the value in front.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, TypeAlias

from reconcile.lazy import pa, pl
from reconcile.suggestions import closest, folded

if TYPE_CHECKING:
    from pandera.api.polars.types import PolarsData


OBJECT_ID = r"^[0-9a-fA-F]{24}$"
#: What Excel and Calc write for a number of 12 digits or more in a General cell: 2.02641E+19 (at
#: most 6 significant digits, a capital E, a plus sign, a two-digit exponent). Only this form is
#: spreadsheet damage: 12E3, 1E5 or a hex ID with one "e" are values someone meant.
EXCEL_NUMBER = r"^[1-9](\.[0-9]{1,5})?E\+[0-9]{2}$"

_STRICT_DMY = r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$"
_LOOSE_DMY = r"^[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}$"
_TWO_DIGIT_YEAR = r"^[0-9]{1,2}/[0-9]{1,2}/[0-9]{2}$"
#: Month/day order: a first part that can be a month, a second that cannot.
_US_ORDER = r"^(0?[1-9]|1[0-2])/(1[3-9]|2[0-9]|3[01])/[0-9]{4}$"
_ISO = r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"


Valid: TypeAlias = "Callable[[pl.Expr], pl.Expr]"


def _evaluate(data: PolarsData, *, valid: Valid, hint: Hint | None = None) -> pl.LazyFrame:
    return data.lazyframe.select(valid(pl.col(data.key)))


Hint: TypeAlias = "Callable[[str], str]"


def check(message: str, valid: Valid, hint: Hint | None = None) -> pa.Check:
    """A column check whose ``valid`` maps the column expression to a boolean expression.

    ``valid`` is kept as the check's statistic, so validate.py can also evaluate every check of
    a schema in one polars pass. ``hint`` (a failing value -> words added after the message,
    or ``""``) is called once per distinct failing value: a "did you mean" for a near miss.
    """
    return pa.Check(_evaluate, error=message, valid=valid, hint=hint)


def frame_check(message: str, valid: pl.Expr) -> pa.Check:
    """A whole-row check; ``message`` may name columns as {column} (replaced by the header)."""
    return pa.Check(_evaluate, error=message, valid=lambda _: valid)


def not_empty() -> pa.Check:
    return check(
        "is blank (only spaces): the API refuses an empty value; write a value or empty the cell",
        lambda c: c.str.len_chars() > 0,
    )


def max_chars(limit: int) -> pa.Check:
    return check(
        f"is longer than {limit} characters: shorten it",
        lambda c: c.str.len_chars() <= limit,
    )


def one_of(allowed: Collection[str], what: str, hint: Hint | None = None) -> pa.Check:
    values = sorted(allowed)
    listed = ", ".join(values) if values else "(none configured)"
    return check(
        f"is not a {what} of the job file (known: {listed}): fix the cell or add the {what}",
        lambda c: c.is_in(values) | (c.str.len_chars() == 0),
        hint,
    )


def community_hint(communities: Collection[str]) -> Hint:
    """ "did you mean acme?" for a community cell that is a job's community written with other
    case or spaces (and a word on ``fold_communities``), or close to one by spelling."""

    def hint(value: str) -> str:
        found = closest(value, communities)
        if found is None:
            return ""
        if folded(found) == folded(value):
            return (
                f"; did you mean {found}? (or set fold_communities = true in the job to match "
                "communities whatever their case and spaces)"
            )
        return f"; did you mean {found}?"

    return hint


def not_excel_number() -> pa.Check:
    return check(
        "was turned into a number by Excel and its digits are lost: "
        "export the ID again as text (format the column as Text before pasting)",
        lambda c: ~c.str.contains(EXCEL_NUMBER),
    )


def dmy_date_checks() -> list[pa.Check]:
    """A real calendar date written DD/MM/YYYY; each wrong shape gets its own hint, once.

    The shapes are mutually exclusive regexes, so a wrong value fails exactly one check.
    """
    return [
        check(
            "is blank (only spaces): write a date DD/MM/YYYY or empty the cell",
            lambda c: c.str.len_chars() > 0,
        ),
        check(
            "is written year first: write it as DD/MM/YYYY, e.g. 31/12/2026",
            lambda c: ~c.str.contains(_ISO),
        ),
        check(
            "has a two-digit year: write the year in full, DD/MM/YYYY, e.g. 31/12/2026",
            lambda c: ~c.str.contains(_TWO_DIGIT_YEAR),
        ),
        check(
            "looks like month/day (US order): write day first, DD/MM/YYYY, e.g. 31/12/2026",
            lambda c: ~c.str.contains(_US_ORDER),
        ),
        check(
            "needs two digits for day and month: write DD/MM/YYYY, e.g. 01/02/2027",
            lambda c: (
                ~c.str.contains(_LOOSE_DMY)
                | c.str.contains(_STRICT_DMY)
                | c.str.contains(_US_ORDER)
            ),
        ),
        check(
            "is not a date: write it as DD/MM/YYYY, e.g. 31/12/2026",
            lambda c: (
                c.str.contains(_LOOSE_DMY)
                | c.str.contains(_ISO)
                | c.str.contains(_TWO_DIGIT_YEAR)
                | (c.str.len_chars() == 0)
            ),
        ),
        check(
            "is not a real calendar date (that day does not exist in that month or year)",
            lambda c: (
                ~c.str.contains(_STRICT_DMY)
                | c.str.contains(_US_ORDER)
                | c.str.strptime(pl.Date, "%d/%m/%Y", strict=False).is_not_null()
            ),
        ),
    ]


def community_column(communities: Collection[str]) -> pa.Column:
    """Every operation's ``community``: required, and one of the job file's communities."""
    named = one_of(communities, "community", community_hint(communities))
    return pa.Column(str, nullable=False, checks=[not_empty(), named])


def record_id(*more: pa.Check) -> pa.Column:
    """A required ID naming the record a row changes: not blank, not a number Excel rounded."""
    return pa.Column(str, nullable=False, checks=[not_empty(), not_excel_number(), *more])


def not_dot_segment() -> pa.Check:
    """An ID that goes into a URL path must not be exactly ``.`` or ``..`` (cells are trimmed
    first). The WHATWG URL standard (browsers, Node, many gateways) resolves ``%2E`` and
    ``%2E%2E`` as dot segments too, so such an ID would address another resource; no encoding
    survives every resolver, so the row is refused."""
    return check(
        "is only dots ('.' or '..'): in a URL path that means 'this' or 'the parent' resource, "
        "and URL resolvers remove it even percent-encoded (%2E), so the request would reach "
        "another resource; no encoding is safe: fix the ID or ask the vendor how to address it",
        lambda c: ~c.is_in([".", ".."]),
    )


def path_id(*more: pa.Check) -> pa.Column:
    """A required ID sent as a URL path segment: :func:`record_id` and :func:`not_dot_segment`."""
    return record_id(not_dot_segment(), *more)


def optional_text(*more: pa.Check) -> pa.Column:
    """An optional value the API takes as text: when given, not blank (and ``more``)."""
    return pa.Column(str, nullable=True, checks=[not_empty(), *more])


def whole_amount_checks(*, positive: bool) -> list[pa.Check]:
    """A whole number in the smallest currency unit, at least 1 when ``positive`` (else at
    least 0); each wrong shape gets its own hint, once."""
    decimals = r"^-?[0-9]+[.,][0-9]+$"
    negative = r"^-[0-9]+([.,][0-9]+)?$"
    below = f"({negative})|(^-?0+$)" if positive else negative
    least = "1 (the API takes a positive amount)" if positive else "0"
    return [
        not_empty(),
        check(
            "has decimals: amounts are whole numbers in the smallest currency unit "
            "(cents): write 2100 for 21.00",
            lambda c: ~c.str.contains(decimals),
        ),
        check(
            f"is not allowed: amounts are at least {least}",
            lambda c: ~c.str.contains(below),
        ),
        check(
            "is not a whole number: write digits only, in the smallest currency unit (cents)",
            lambda c: (
                c.str.contains(r"^[0-9]+$")
                | c.str.contains(decimals)
                | c.str.contains(negative)
                | (c.str.len_chars() == 0)
            ),
        ),
        check("is too large: at most 15 digits", lambda c: c.str.len_chars() <= 15),
    ]
