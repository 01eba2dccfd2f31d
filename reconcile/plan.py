"""Valid rows -> the requests to send, grouped by community.

An operation maps each row to a request; rows whose requests are identical (several rows that
form one request) share it, and each of them reports that request's outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import polars as pl

from reconcile.columns import REQUEST_ID, ROW
from reconcile.operations.base import Operation


@dataclasses.dataclass(frozen=True, slots=True)
class RequestPlan:
    rows: pl.DataFrame
    """``__row`` -> ``__request`` for every valid row."""
    requests: pl.DataFrame
    """One line per request: ``__request``, community, target, method, path, body, repeatable,
    ``request`` (the text shown in results)."""


def describe(method: pl.Expr, path: pl.Expr, body: pl.Expr) -> pl.Expr:
    """The request as an auditor reads it: ``PATCH /v1/... {"json": "body"}``."""
    return pl.concat_str([method, path, body], separator=" ", ignore_nulls=True)


def plan_requests(
    valid: pl.DataFrame, operation: Operation, options: Mapping[str, Any] | None = None
) -> RequestPlan:
    per_row = operation.requests(valid, options or {})
    shape = ["community", "target", "method", "path", "body", "repeatable"]
    if operation.request_key is None:
        request_id = pl.col(ROW).cast(pl.Int64)
    else:
        request_id = pl.struct(operation.request_key).rank("dense").cast(pl.Int64)
    keyed = per_row.with_columns(request_id.alias(REQUEST_ID))
    if operation.request_key is not None:
        keyed_requests = keyed.unique(REQUEST_ID, keep="first", maintain_order=True)
    else:
        keyed_requests = keyed
    requests = keyed_requests.select(
        REQUEST_ID,
        *shape,
        describe(pl.col("method"), pl.col("path"), pl.col("body")).alias("request"),
    )
    return RequestPlan(rows=keyed.select(ROW, REQUEST_ID), requests=requests)
