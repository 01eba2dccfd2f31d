"""Run an operation's pandera schema and turn its failure cases into per-row messages.

All of the schema's checks are first evaluated together in one polars pass, which tells the rows
that pass every check; pandera then validates the other rows eagerly with ``lazy=True``, so that
every failing check of every row is collected, and its failure cases are mapped back to the rows,
so each row ends with either no error or all its errors in plain words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrorReason, SchemaErrors

from reconcile.columns import ERROR, ROW
from reconcile.operations.base import Operation

_SHOWN_VALUE_CHARS = 40
_LISTED_ROWS = 10

#: pandera's built-in checks, in the words of someone filling a spreadsheet.
_BUILTIN_MESSAGES = {
    "not_nullable": "is empty: fill it in",
}


def validate(
    frame: pl.DataFrame,
    operation: Operation,
    communities: Collection[str],
    headers: Mapping[str, str],
    cell_errors: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Normalise ``frame`` (canonical columns) and add ``__error``: null for a valid row.

    ``headers`` maps canonical names to the file's own headers, which the messages use;
    ``cell_errors`` (``__row``, ``message``) adds what only the file format showed.
    """
    normalised = operation.normalise(frame.lazy()).collect()
    schema = operation.schema(communities, operation.family_columns(normalised.columns))
    passing = passes_checks(normalised, schema)
    # pandera explains the rows that fail; rows that pass every check need no explaining.
    suspects = pl.int_range(normalised.height, dtype=pl.UInt32, eager=True).alias("index")
    if passing is not None:
        suspects = suspects.filter(~passing)
    try:
        schema.validate(normalised[suspects], lazy=True)
        failures = None
    except SchemaErrors as exc:
        _refuse_crashed_checks(exc)
        failures = _messages(exc.failure_cases, operation, headers, _hints(schema))
        failures = failures.with_columns(suspects.gather(failures.get_column("index")))
    conflicts = _conflicts(normalised, operation.conflict_key, headers)
    errors = conflicts if failures is None else pl.concat([failures, conflicts])
    across = operation.group_errors(normalised, headers)
    if across is not None and across.height:
        errors = pl.concat([errors, across.select(pl.col("index").cast(pl.UInt32), "message")])
    if cell_errors is not None and cell_errors.height:
        positions = normalised.select(ROW).with_row_index("index")
        errors = pl.concat([cell_errors.join(positions, on=ROW).select("index", "message"), errors])
    # Each check fails at most once per row, so a row's messages are distinct already. Most
    # rows have one message: only the others need joining.
    several = pl.col("index").is_duplicated()
    joined = errors.filter(several).group_by("index").agg(pl.col("message").str.join("; "))
    per_row = pl.concat([errors.filter(~several), joined])
    error = pl.repeat(None, normalised.height, dtype=pl.String, eager=True).scatter(
        per_row.get_column("index"), per_row.get_column("message")
    )
    return normalised.with_columns(error.alias(ERROR))


def _refuse_crashed_checks(exc: SchemaErrors) -> None:
    """A check whose own code raised is reported by pandera without a row: its rows would pass
    as valid and be sent. Such a check is a bug in reconcile: stop before anything is sent."""
    crashed = [e for e in exc.schema_errors if e.reason_code == SchemaErrorReason.CHECK_ERROR]
    if crashed:
        shown = "; ".join(
            f"{getattr(e.check, 'error', e.check)}: {e.failure_cases}" for e in crashed
        )
        raise RuntimeError(f"a validation check failed to run (a bug, nothing sent): {shown}")


def passes_checks(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.Series | None:
    """Whether each row passes every check of ``schema`` (pandera's semantics: a required column
    is not null; a check ignores nulls), all checks in one parallel polars pass.

    pandera runs one pass per check, which dominates large files; this answers the common
    question (which rows are fine) at once. None when the schema has a check this cannot
    evaluate: pandera then sees every row.
    """
    conditions: list[pl.Expr | None] = []
    for name, column in schema.columns.items():
        if column.unique or column.regex:
            return None
        if not column.nullable:
            conditions.append(pl.col(name).is_not_null())
        conditions += [_condition(check, pl.col(name)) for check in column.checks]
    conditions += [_condition(check, pl.all()) for check in schema.checks]
    known = [c for c in conditions if c is not None]
    if schema.unique or len(known) < len(conditions):
        return None
    if not known:
        return pl.Series(values=[True] * frame.height, dtype=pl.Boolean)
    # One column per condition, lazily: polars evaluates them in parallel and computes a
    # sub-expression shared by several checks (a date regex) once.
    each = frame.lazy().select(c.alias(str(n)) for n, c in enumerate(known))
    return each.select(pl.all_horizontal(pl.all())).collect().to_series()


def _condition(check: pa.Check, column: pl.Expr) -> pl.Expr | None:
    valid = (check.statistics or {}).get("valid")
    if valid is None or check.element_wise or check.groupby is not None:
        return None
    condition: pl.Expr = valid(column).fill_null(check.ignore_na)
    return condition


def _hints(schema: pa.DataFrameSchema) -> dict[str, Callable[[str], str]]:
    """Check message -> its hint (:func:`reconcile.operations.rules.check`), where it has one."""
    return {
        check.error: hint
        for column in schema.columns.values()
        for check in column.checks
        if (hint := (check.statistics or {}).get("hint")) is not None and check.error
    }


def _hinted(cases: pl.DataFrame, hints: Mapping[str, Callable[[str], str]]) -> pl.Expr:
    """Per failure case, its check's hint for its value ("" when none): each hint is called
    once per distinct failing value."""
    found = cases.filter(pl.col("check").is_in(list(hints))).select(
        "check", pl.col("failure_case").cast(pl.String).alias("value")
    )
    pairs = found.unique().drop_nulls()
    words = {f"{check}\x00{value}": hints[check](value) for check, value in pairs.iter_rows()}
    key = pl.col("check") + pl.lit("\x00") + pl.col("failure_case").cast(pl.String)
    return key.replace_strict(words, default=pl.lit(""), return_dtype=pl.String).fill_null("")


def _header_words(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: f"'{header}'" for name, header in headers.items()}


def _messages(
    cases: pl.DataFrame,
    operation: Operation,
    headers: Mapping[str, str],
    hints: Mapping[str, Callable[[str], str]],
) -> pl.DataFrame:
    """Failure cases -> (index, message) with the header and the offending value in front."""
    words = {n: headers.get(n, n) for n in operation.column_names}
    quoted = _header_words(words)
    # Few distinct checks: render each message template once, then map them in polars.
    templates = cases.get_column("check").unique().to_list()
    rendered = {
        t: re.sub(
            r"\{([\w.]+)\}",
            lambda m: quoted.get(m.group(1), m.group(0)),
            _BUILTIN_MESSAGES.get(t, t),
        )
        for t in templates
    }
    value = pl.col("failure_case").cast(pl.String)
    shown = (
        pl.when(value.str.len_chars() > _SHOWN_VALUE_CHARS)
        .then(value.str.slice(0, _SHOWN_VALUE_CHARS) + "…")
        .otherwise(value)
    )
    check = pl.col("check").replace_strict(rendered, return_dtype=pl.String)
    if hints:
        check = check + _hinted(cases, hints)
    is_column = pl.col("schema_context") == "Column"
    header = pl.col("column").replace_strict(
        words, default=pl.col("column"), return_dtype=pl.String
    )
    message = (
        pl.when(is_column & (value.is_null() | (value == "")))
        .then(pl.format("{}: {}", header, check))
        .when(is_column)
        .then(pl.format("{}: '{}' {}", header, shown, check))
        .otherwise(check)
    )
    return cases.filter(pl.col("index").is_not_null()).select(
        pl.col("index").cast(pl.UInt32), message.alias("message")
    )


def duplicated(frame: pl.DataFrame, key: Sequence[str]) -> pl.Series:
    """Whether each row shares its ``key`` values with another row (nulls equal).

    Hashing and sorting a million keys is several times faster than polars' exact
    ``is_duplicated`` on strings; rows whose hash occurs more than once are then checked exactly,
    so a hash collision costs time, never a wrong answer.
    """
    hashed = pl.reduce(
        lambda acc, h: acc ^ h, [pl.col(k).hash(seed=n) for n, k in enumerate(key)]
    ).alias("hash")
    hashes = frame.select(hashed).to_series()
    ordered = hashes.sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    suspect = frame.select(pl.lit(hashes).is_in(repeated.implode())).to_series()
    if not suspect.any():
        return suspect
    candidates = frame.filter(suspect).select(pl.struct(key).is_duplicated()).to_series()
    return suspect.scatter(suspect.arg_true(), candidates)


def _conflicts(
    frame: pl.DataFrame, key: tuple[str, ...], headers: Mapping[str, str]
) -> pl.DataFrame:
    """Rows that share ``key`` with another row: each names the rows of its group."""
    if not key:
        return pl.DataFrame(schema={"index": pl.UInt32, "message": pl.String})
    named = " and ".join(f"'{headers.get(k, k)}'" for k in key)
    present = pl.all_horizontal(pl.col(k).is_not_null() & (pl.col(k) != "") for k in key)
    keyed = frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("index"), ROW, *key)
    keyed = keyed.filter(present)
    rows = keyed.filter(duplicated(keyed, key))
    # One message per group, listing a few rows: a group can be thousands of rows long.
    groups = rows.group_by(key).agg(
        pl.col(ROW).sort().head(_LISTED_ROWS).cast(pl.String).str.join(", ").alias("__listed"),
        pl.len().cast(pl.Int64).alias("__count"),
    )
    more = pl.col("__count") - _LISTED_ROWS
    listed = (
        pl.when(more > 0)
        .then(pl.format("{} and {} more", pl.col("__listed"), more))
        .otherwise(pl.col("__listed"))
    )
    return rows.join(groups, on=key, how="left").select(
        "index",
        pl.format(
            "the same {} are on rows {}: keep one row per record (which row wins would "
            "depend on the order the requests are sent)",
            pl.lit(named),
            listed,
        ).alias("message"),
    )
