"""The audit hashes, defined over values (RFC 8785 JSON), and the legacy forms they replaced.

**Plan hash** (a plan whose header has ``"hash_format": "RFC 8785"``): SHA-256 of the JCS
bytes of ``{"header": HEADER, "rows": [ROW, ...]}``, the rows in row order, each ``{"row":
int, "community": str|null, "status": str, "request": str|null, "error": str|null}``.

**Chain record hash** (every record from the chain's ``format`` record on): SHA-256 of the JCS
bytes of ``{"kind": str, "prev_hash": str, "record": RECORD, "run_id": str}``.

Both are written out in the README, so that an auditor recomputes them with any JCS
implementation. The legacy forms (records chained and plans made before, over the bytes
``json.dumps`` and polars wrote) are kept to verify what they hashed: see :mod:`reconcile.
chain_format` for how a chain moves from one to the other.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from typing import Final

from reconcile.canonical_json import MAX_SAFE_INTEGER, integer_expr, jcs, string_expr
from reconcile.lazy import pl

PLAN_COLUMNS = ("row", "community", "status", "request", "error")

#: The header field that names a plan's hash form, and its value for RFC 8785.
HASH_FORMAT: Final = "hash_format"
RFC_8785: Final = "RFC 8785"

#: Rows written per slice when hashing a plan (~25 MB of text for a million-row file's rows).
HASHED_ROWS_PER_SLICE = 100_000


def is_canonical_plan(header: Mapping[str, object]) -> bool:
    return header.get(HASH_FORMAT) == RFC_8785


def plan_hash(header: Mapping[str, object], rows: pl.DataFrame | Iterable[pl.DataFrame]) -> str:
    """The plan's SHA-256 in the form its header names (RFC 8785, or the legacy one)."""
    if is_canonical_plan(header):
        return canonical_plan_hash(header, rows)
    return legacy_plan_hash(header, rows)


def _slices(rows: pl.DataFrame | Iterable[pl.DataFrame]) -> Iterable[pl.DataFrame]:
    return rows.iter_slices(HASHED_ROWS_PER_SLICE) if isinstance(rows, pl.DataFrame) else rows


def row_jcs(frame: pl.DataFrame) -> pl.Series:
    """Each plan row's JCS text (keys in RFC 8785 order: community, error, request, row,
    status), built by polars from the values."""
    rows = frame.get_column("row").cast(pl.Int64, strict=True)
    biggest = rows.abs().max()
    if isinstance(biggest, int) and biggest > MAX_SAFE_INTEGER:
        raise ValueError("a plan row number beyond 2^53 - 1 has no RFC 8785 form")
    parts = [
        pl.lit('{"community":'),
        string_expr(pl.col("community")),
        pl.lit(',"error":'),
        string_expr(pl.col("error")),
        pl.lit(',"request":'),
        string_expr(pl.col("request")),
        pl.lit(',"row":'),
        integer_expr(pl.col("row")),
        pl.lit(',"status":'),
        string_expr(pl.col("status")),
        pl.lit("}"),
    ]
    return frame.select(pl.concat_str(parts).alias("jcs")).to_series()


def canonical_plan_hash(
    header: Mapping[str, object], rows: pl.DataFrame | Iterable[pl.DataFrame]
) -> str:
    """SHA-256 of JCS ``{"header": ..., "rows": [...]}``, written a slice of rows at a time
    (the same bytes as one write), so a million rows never sit in memory as one text."""
    digest = hashlib.sha256(b'{"header":' + jcs(header) + b',"rows":[')
    first = True
    for part in _slices(rows):
        if part.height == 0:
            continue
        text = row_jcs(part.select(PLAN_COLUMNS)).str.join(",").item()
        digest.update((text if first else "," + text).encode("utf-8"))
        first = False
    digest.update(b"]}")
    return digest.hexdigest()


def legacy_canonical(value: object) -> str:
    """The text records and headers were hashed over before RFC 8785 (json.dumps, sorted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def legacy_plan_hash(
    header: Mapping[str, object], rows: pl.DataFrame | Iterable[pl.DataFrame]
) -> str:
    """The legacy plan hash: SHA-256 over ``legacy_canonical(header)``, a newline, and one JSON
    line per row as polars' ``write_ndjson`` writes it (so it holds only while polars writes
    those bytes: :mod:`reconcile.chain_format` re-anchors such plans in RFC 8785)."""
    digest = hashlib.sha256(legacy_canonical(header).encode())
    digest.update(b"\n")
    for part in _slices(rows):
        text = io.BytesIO()
        part.select(PLAN_COLUMNS).write_ndjson(text)
        digest.update(text.getbuffer())
    return digest.hexdigest()


def record_hash(prev_hash: str, kind: str, run_id: str, record: object) -> str:
    """A chain record's SHA-256: JCS of its kind, the hash before it, its record and run id."""
    value = {"kind": kind, "prev_hash": prev_hash, "record": record, "run_id": run_id}
    return hashlib.sha256(jcs(value)).hexdigest()


def legacy_record_hash(prev_hash: str, kind: str, run_id: str, text: str) -> str:
    """The legacy chain record hash, over the record's stored text."""
    return hashlib.sha256(f"{prev_hash}\n{kind}\n{run_id}\n{text}".encode()).hexdigest()
