"""What every API operation declares, and the shared helpers they build requests with.

The reader, validator, planner, dispatcher and results writer only talk to this interface: an
operation module owns its columns, its pandera schema, how valid rows become requests, how a
response is classified and which credentials its requests carry.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import json
import urllib.parse
from collections.abc import Collection, Mapping, Sequence

from reconcile.columns import ROW
from reconcile.json_types import JSONObject
from reconcile.lazy import pa, pl
from reconcile.operations import rules, typed
from reconcile.operations.typed import JsonValue, RawJson
from reconcile.readback import Expect, ReadPlan

#: What cells are trimmed of: Unicode White_Space (polars' default) and the byte-order mark, so
#: that nothing the tool sends as non-empty is empty to an API that trims (JavaScript's trim).
TRIMMED = (
    "\t\n\v\f\r \x85\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
#: Characters that need no percent-encoding in a path segment (RFC 3986 "unreserved").
_UNRESERVED = r"^[A-Za-z0-9._~-]*$"


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One input column of an operation, under its canonical (API) name."""

    name: str
    required: bool
    rule: str
    """The rule in plain words, for `reconcile operations` and the README."""
    kind: str = "text"
    """How a spreadsheet cell is read: ``id`` (an identifier or code the API takes as a string:
    a number, date or boolean cell is refused, and so is a CSV cell in E-notation or with a
    trailing ``.0``, unless the job's ``numeric_ids`` accepts the column), ``text`` (the API
    reads text: a number cell is refused unless it is exactly its text), ``date`` (a date cell
    becomes DD/MM/YYYY) or ``number`` (the API reads a number: a number cell is its value)."""


class Verdict(enum.Enum):
    """What an HTTP answer means for the row; what follows it is the retry policy's
    (:class:`reconcile.retry.RetryPolicy`)."""

    APPLIED = "applied"
    REJECTED = "rejected"  # the API refused the row
    AUTH = "auth"  # the community's credentials are refused
    RATE_LIMITED = "rate_limited"  # 429: the API asks the community to wait
    TRANSIENT = "transient"  # 5xx: the server failed, perhaps after applying the row
    NOT_PROCESSED = "not_processed"  # 408, 425: the server did not act on it


@dataclasses.dataclass(frozen=True, slots=True)
class Classified:
    verdict: Verdict
    message: str


class Operation(abc.ABC):
    """One API operation. Subclasses are declarations; the pipeline runs them."""

    name: str
    summary: str
    columns: tuple[Column, ...]
    credentials: tuple[str, ...]
    """Credential names the job file gives as ``<name>_env`` per community."""
    conflict_key: tuple[str, ...]
    """Rows sharing these values in one file are all invalid: their order would decide."""
    families: tuple[str, ...] = ()
    """Column families: a header ``metadata.<key>`` is column ``metadata.<key>`` of the family
    ``metadata`` (its values become one JSON object; an empty cell leaves the key out)."""
    id_families: tuple[str, ...] = ()
    """Families whose text columns are identifiers or codes (``Column.kind`` ``id``)."""
    request_key: tuple[str, ...] | None = None
    """Output columns of ``requests`` whose equal values make several rows one request
    (line items of one transaction); None: every row is its own request."""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def family_columns(self, names: Sequence[str]) -> list[str]:
        """The family columns among ``names``, in their order."""
        return [n for n in names if any(n.startswith(f"{f}.") for f in self.families)]

    def family_members(self, names: Sequence[str], family: str) -> dict[str, JsonValue]:
        """``{key: value}`` of one family, for a JSON object; a header ``metadata.age:number``
        is the key ``age`` sent as a number (:mod:`reconcile.operations.typed`)."""
        prefix = f"{family}."
        members: dict[str, JsonValue] = {}
        for name in names:
            if name.startswith(prefix):
                key, kind = typed.split(name[len(prefix) :])
                members[key] = typed.value(pl.col(name), kind)
        return members

    def group_errors(self, frame: pl.DataFrame, headers: Mapping[str, str]) -> pl.DataFrame | None:
        """Rules across rows beyond ``conflict_key`` (``index``, ``message``); none by default."""
        return None

    def extra_headers(self, options: Mapping[str, object]) -> dict[str, str]:
        """Headers from the job's ``[options]`` table (none by default)."""
        return {}

    def partition_key(self) -> pl.Expr | None:
        """An expression over the normalised columns that rows meeting in any rule across rows
        (``conflict_key``, ``group_errors``, ``request_key``) share, so that a large file can be
        checked and planned in independent buckets (:mod:`reconcile.buckets`). None: such a
        file is processed whole. An operation with request groups or ``group_errors`` states
        its own; by default, ``conflict_key``."""
        grouped = type(self).group_errors is not Operation.group_errors
        if not self.conflict_key or grouped or self.request_key is not None:
            return None
        return pl.struct(list(self.conflict_key))

    def normalise(self, frame: pl.LazyFrame, *, fold_every_column: bool = False) -> pl.LazyFrame:
        """Trim every operation column and fold CRLF inside cells, as the API trims values; a
        family cell of only spaces is an empty cell (the key is not sent).
        ``fold_every_column`` skips the pass that finds the columns with a CR (same values)."""
        names = frame.collect_schema().names()
        family = self.family_columns(names)
        columns = [c.name for c in self.columns]
        # Folding CRLF rewrites every cell of a column: only where a column has a CR at all.
        folded = (
            set(columns)
            if fold_every_column
            else {
                name
                for name, found in frame.select(
                    pl.col(columns).str.contains("\r", literal=True).any()
                )
                .collect()
                .row(0, named=True)
                .items()
                if found
            }
        )

        def cleaned(name: str) -> pl.Expr:
            column = pl.col(name)
            if name in folded:
                column = column.str.replace_all("\r\n", "\n", literal=True)
            return column.str.strip_chars(TRIMMED)

        return frame.with_columns(
            *(cleaned(c) for c in columns),
            *(pl.col(n).str.strip_chars(TRIMMED).replace("", None) for n in family),
        )

    def schema(
        self, communities: Collection[str], family_columns: Sequence[str] = ()
    ) -> pa.DataFrameSchema:
        """The API's rules for one row, as a pandera schema over the normalised frame
        (``family_columns``: the family columns this file has, e.g. ``metadata.location``):
        a community of the job, :meth:`column_rules`, typed family columns, :meth:`row_checks`."""
        return pa.DataFrameSchema(
            {
                "community": rules.community_column(communities),
                **self.column_rules(family_columns),
                **typed.family_columns_schema(family_columns, self.families),
            },
            checks=self.row_checks(family_columns),
            strict=False,
        )

    @abc.abstractmethod
    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        """Each column's own rules (pandera columns over trimmed text; checks from
        :mod:`reconcile.operations.rules`)."""

    def row_checks(self, family_columns: Sequence[str]) -> list[pa.Check]:
        """Rules across a row's columns (none by default)."""
        return []

    @abc.abstractmethod
    def requests(self, valid: pl.DataFrame, options: Mapping[str, object]) -> pl.DataFrame:
        """Valid normalised rows -> one line per row with the request it is part of
        (``options``: the job's ``[options]`` table).

        Columns: ``__row``, ``community``, ``target`` (the id the request changes), ``method``,
        ``path`` (relative to the base URL, query included), ``body`` (JSON text or null),
        ``repeatable`` (whether an ambiguous failure may be retried). Rows with the same
        ``request_key`` must carry identical requests: they are sent once.
        """

    @abc.abstractmethod
    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        """The headers that authenticate one community's requests."""

    def read_back(self, target: str, path: str, body: JSONObject) -> ReadPlan | None:
        """The documented GET that reads back what one request wrote (``target``, ``path`` and
        parsed JSON ``body`` as sent), and where its answer holds each written value
        (:mod:`reconcile.readback`). None: the API documents no read."""
        return None

    def row_item(self, row: Mapping[str, object]) -> str | None:
        """The item a (normalised) row wrote, as its read-back's ``Expect.item`` names it, so an
        item's difference marks only its row; None: the row is the whole record."""
        return None

    def echoed(self, body: JSONObject) -> tuple[Expect, ...]:
        """Where the write's own answer echoes each value sent (APIs with no read: the rows are
        ``confirmed`` when it does); none by default."""
        return ()

    def classify(self, status: int, body: bytes) -> Classified:
        """Map an HTTP answer to a verdict; operations override for endpoint-specific codes."""
        if 200 <= status < 300:
            return Classified(Verdict.APPLIED, "")
        message = api_message(body) or f"HTTP {status}"
        if status in (401, 403):
            return Classified(Verdict.AUTH, message)
        if status == 429:
            return Classified(Verdict.RATE_LIMITED, message)
        if status in (408, 425):
            # RFC 9110/8470: the request was not (completely) received, or not acted on yet.
            return Classified(Verdict.NOT_PROCESSED, message)
        if status in (500, 502, 503, 504) or status >= 500:
            return Classified(Verdict.TRANSIENT, message)
        return Classified(Verdict.REJECTED, message)


class BearerKeyOperation(Operation, abc.ABC):
    """An operation whose community is resolved by the API from a Bearer key (Returning.AI)."""

    credentials = ("api_key",)

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['api_key']}"}


def one_request_per_group(
    frame: pl.DataFrame,
    key: pl.Expr,
    shared: Sequence[str],
    headers: Mapping[str, str],
    record: str,
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Rows grouped into one request by ``key`` must agree on every field in ``shared``, or
    which row's value is sent would depend on row order: each row of such a group gets a
    message naming the group's rows. Returns the keyed rows (``index``, ``__group``, ``__rows``
    added, for further checks) and those messages (``index``, ``message``)."""
    keyed = frame.with_row_index("index").with_columns(key.alias("__group"))
    keyed = keyed.filter(pl.col("__group").is_not_null())
    rows = keyed.group_by("community", "__group").agg(
        pl.col(ROW).sort().head(10).cast(pl.String).str.join(", ").alias("__rows")
    )
    keyed = keyed.join(rows, on=["community", "__group"], how="left", maintain_order="left")
    problems = [
        keyed.filter(pl.col(field).n_unique().over("community", "__group") > 1).select(
            "index",
            pl.format(
                "rows {} are one {} but disagree on '{}': give all its rows the same value",
                pl.col("__rows"),
                pl.lit(record),
                pl.lit(headers.get(field, field)),
            ).alias("message"),
        )
        for field in shared
        if field in frame.columns
    ]
    return keyed, problems


def request_lines(
    frame: pl.DataFrame,
    *,
    target: pl.Expr,
    method: str,
    path: pl.Expr,
    body: pl.Expr,
    repeatable: pl.Expr,
) -> pl.DataFrame:
    """The frame :meth:`Operation.requests` returns: one line per input row, its request."""
    return frame.select(
        ROW,
        "community",
        target.alias("target"),
        pl.lit(method).alias("method"),
        path.alias("path"),
        body.alias("body"),
        repeatable.alias("repeatable"),
    )


def with_query_string(frame: pl.DataFrame, columns: Sequence[str]) -> tuple[pl.DataFrame, pl.Expr]:
    """The frame with each column percent-encoded, and ``name=value&...`` of the present ones
    (each column is the query parameter of its name; empty when none is present)."""
    for column in columns:
        frame = with_encoded_segment(frame, column, f"__q_{column}")
    query = pl.concat_str(
        *(pl.lit(f"{c}=") + pl.col(f"__q_{c}") for c in columns), separator="&", ignore_nulls=True
    )
    return frame, query


def with_query(path: pl.Expr, query: pl.Expr) -> pl.Expr:
    """``path?query``, or the bare path where the query is empty."""
    return pl.when(query != "").then(path + pl.lit("?") + query).otherwise(path)


def rows_problem(keyed: pl.DataFrame, where: pl.Expr, message: str) -> pl.DataFrame:
    """(``index``, ``message``) for the grouped rows ``where`` holds; ``{}`` in ``message`` is
    the group's row numbers (``__rows`` of :func:`one_request_per_group`)."""
    return keyed.filter(where).select(
        "index", pl.format(message, pl.col("__rows")).alias("message")
    )


def api_message(body: bytes) -> str:
    """The API's own words from an error body, whatever its vendor's shape: an envelope's
    ``message`` (``error``, ``details``), or Capillary's ``errors[]`` / ``warnings[]`` entries
    (``code`` and ``message`` each); else a short excerpt of the body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if not isinstance(data, dict):
        return body[:200].decode("utf-8", "replace").strip()
    for key in ("message", "error", "details"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    listed = [
        f"{entry.get('message') or ''} ({entry['code']})".strip()
        if entry.get("code") is not None
        else str(entry.get("message") or "")
        for key in ("errors", "warnings")
        for entry in (data.get(key) or [])
        if isinstance(entry, dict) and (entry.get("message") or entry.get("code") is not None)
    ]
    return "; ".join(m for m in listed if m)


JsonFields = Mapping[str, "JsonValue | JsonFields"]


def _leaves(fields: JsonFields, prefix: str = "") -> list[tuple[str, JsonValue]]:
    found: list[tuple[str, JsonValue]] = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            found += _leaves(value, f"{prefix}{key}\0")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def _placeholder(bit: int) -> tuple[str, str]:
    """A string no cell holds (it has NUL bytes), and its JSON text as polars encodes it."""
    text = f"\x00raw{bit}\x00"
    encoded = pl.select(pl.struct(pl.lit(text).alias("k")).struct.json_encode()).item()
    return text, encoded[len('{"k":') : -1]


def _struct(fields: JsonFields, present: Mapping[str, pl.Expr], prefix: str = "") -> pl.Expr | None:
    """A struct of the present leaves (path -> expression); a nested object with no present leaf
    is left out."""
    members = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            inner = _struct(value, present, f"{prefix}{key}\0")
            if inner is not None:
                members.append(inner.alias(key))
        elif f"{prefix}{key}" in present:
            members.append(present[f"{prefix}{key}"].alias(key))
    return pl.struct(members) if members else None


def with_json_object(frame: pl.DataFrame, fields: JsonFields, alias: str) -> pl.DataFrame:
    """Add ``alias``: a JSON object per row, keys in the given order, null fields left out.

    ``fields`` maps keys to expressions, to :class:`RawJson` (an expression yielding JSON text,
    put in the object as it is: a number, an array, null), or to nested mappings (a nested
    object, left out when none of its fields is present). Rows are grouped by which fields they have (a handful of
    shapes); each shape is encoded by polars in one pass (correct escaping), so the text is
    deterministic and doubles as the canonical body.
    """
    leaves = _leaves(fields)
    if not leaves:
        return frame.with_columns(pl.lit("{}").alias(alias))
    exprs = [v.expr if isinstance(v, RawJson) else v for _, v in leaves]
    raw = {bit: _placeholder(bit) for bit, (_, v) in enumerate(leaves) if isinstance(v, RawJson)}
    columns = {f"__leaf{i}": expr for i, expr in enumerate(exprs)}
    shape = pl.sum_horizontal(
        expr.is_not_null().cast(pl.UInt64) * (1 << bit) for bit, expr in enumerate(exprs)
    )
    indexed = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("__index"), shape.alias("__shape"), **columns
    )
    bodies = pl.repeat(None, frame.height, dtype=pl.String, eager=True).alias(alias)
    for code in indexed.get_column("__shape").unique().to_list():
        present = {
            path: pl.lit(raw[bit][0]) if bit in raw else pl.col(f"__leaf{bit}")
            for bit, (path, _) in enumerate(leaves)
            if code >> bit & 1
        }
        struct = _struct(fields, present)
        encoded = struct.struct.json_encode() if struct is not None else pl.lit("{}")
        for bit, (_, token) in raw.items():  # JSON text (a number, [..], null) put in place
            if code >> bit & 1:
                encoded = encoded.str.replace(token, pl.col(f"__leaf{bit}"), literal=True, n=1)
        part = indexed.filter(pl.col("__shape") == code).select("__index", encoded)
        bodies = bodies.scatter(part.get_column("__index"), part.to_series(1))
    return frame.with_columns(bodies)


def encode_segment(value: str) -> str:
    """``value`` as one URL path segment that names exactly it: every character outside RFC
    3986's unreserved set percent-encoded. A segment of only dots (``.``, ``..``) cannot be
    sent safely in any encoding (the WHATWG URL standard resolves ``%2E`` as a dot segment): the
    file rules refuse such IDs (:func:`rules.not_dot_segment`); ``%2E`` here is a last guard for
    this tool's own client only, not a promise about other resolvers."""
    if value.strip(".") == "":
        return value.replace(".", "%2E")
    return urllib.parse.quote(value, safe="")


def with_encoded_segment(frame: pl.DataFrame, column: str, alias: str) -> pl.DataFrame:
    """Add ``alias``: ``column`` percent-encoded as one URL path segment (:func:`encode_segment`).

    Values made only of unreserved characters, not only dots (all valid IDs), pass through as
    they are; the rare others are encoded on that subset only.
    """
    values = frame.get_column(column)
    unsafe = values.filter(
        ~values.str.contains(_UNRESERVED) | values.str.contains(r"^\.*$")
    ).unique()
    if unsafe.drop_nulls().is_empty():
        return frame.with_columns(values.alias(alias))
    encoded = {v: encode_segment(v) for v in unsafe.drop_nulls().to_list()}
    return frame.with_columns(
        pl.col(column).replace_strict(encoded, default=pl.col(column)).alias(alias)
    )
