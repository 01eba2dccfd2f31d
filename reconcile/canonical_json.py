"""RFC 8785 canonical JSON (JCS): the one serialisation every audit hash is computed over.

A value's JCS bytes depend only on the value (objects' keys sorted by their UTF-16 code units,
no whitespace, numbers as ECMAScript writes them, strings with only the required escapes), so
a hash over them outlives any upgrade of polars or of ``json.dumps``. :func:`jcs` is Trail of
Bits' ``rfc8785``; :func:`string_expr` writes a string column's JCS with polars expressions
(a million plan rows in a fraction of a second, where a Python call per row takes ~35 s), and
the tests check it against ``rfc8785`` on every kind of character.
"""

from __future__ import annotations

import json

import rfc8785

from reconcile.json_types import JSON
from reconcile.lazy import pl

#: What JCS escapes in a string (RFC 8785 3.2.2.2): the quote, the backslash, and every control
#: character below U+0020 (the five with a short form use it; the others ``\\u00xx``, lowercase).
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPES = {"\\": "\\\\", '"': '\\"'} | {
    chr(c): _SHORT.get(chr(c), f"\\u{c:04x}") for c in range(0x20)
}

#: The largest magnitude of an integer JCS writes exactly (an IEEE 754 double's 2^53 - 1).
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalJsonError(ValueError):
    """A value with no RFC 8785 form: NaN or infinity, an integer beyond 2^53 - 1, a lone
    surrogate, a type that is not JSON."""


def json_value(value: object) -> JSON:
    """``value`` as the JSON value it stands for (tuples as arrays, keys as strings)."""
    try:
        parsed: JSON = json.loads(json.dumps(value, allow_nan=False, ensure_ascii=False))
        return parsed
    except (TypeError, ValueError) as error:
        raise CanonicalJsonError(f"not a JSON value: {error}") from None


def jcs(value: object) -> bytes:
    """The RFC 8785 bytes of ``value`` (its JSON value: :func:`json_value`)."""
    try:
        return rfc8785.dumps(json_value(value))
    except rfc8785.CanonicalizationError as error:
        raise CanonicalJsonError(f"no RFC 8785 form: {error}") from None


def jcs_text(value: object) -> str:
    """:func:`jcs` as text (what the stores keep: valid JSON, parsed back to the same value)."""
    return jcs(value).decode("utf-8")


def string_expr(expr: pl.Expr) -> pl.Expr:
    """Each string's JCS (``"..."``, escaped as RFC 8785 says), ``null`` for a null."""
    escaped = expr.cast(pl.String).str.replace_many(list(_ESCAPES), list(_ESCAPES.values()))
    return pl.concat_str(pl.lit('"'), escaped, pl.lit('"')).fill_null(pl.lit("null"))


def integer_expr(expr: pl.Expr) -> pl.Expr:
    """Each integer's JCS (its decimal digits), ``null`` for a null; the caller checks the
    magnitude (:data:`MAX_SAFE_INTEGER`)."""
    return expr.cast(pl.Int64, strict=True).cast(pl.String).fill_null(pl.lit("null"))


def same_request(approved: str, now: str) -> bool:
    """Whether two request texts (``METHOD PATH [BODY]``) are the same request: the same method
    and path, and bodies that are the same JSON value (equal JCS), however each was written."""
    if approved == now:
        return True
    before, after = approved.split(" ", 2), now.split(" ", 2)
    if before[:2] != after[:2] or len(before) != len(after):
        return False
    if len(before) == 2:
        return True
    try:
        return jcs(json.loads(before[2])) == jcs(json.loads(after[2]))
    except (ValueError, CanonicalJsonError):
        return False
