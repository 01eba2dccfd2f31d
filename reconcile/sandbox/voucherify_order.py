"""Emulates Voucherify ``PUT /v1/orders/{orderId}`` (shared/api/voucherify-order-update.txt).

A project (our community) is named by X-App-Id + X-App-Token. The order is found by its ID or its
source ID within the project; fields are validated as the doc describes them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from reconcile.sandbox.endpoint import ApiError, Endpoint, app_token, js_trim
from reconcile.sandbox.state import SandboxState

STATUSES = {"CREATED", "PAID", "CANCELED", "FULFILLED"}
FIELDS = {
    "status",
    "amount",
    "discount_amount",
    "source_id",
    "referrer_id",
    "metadata",
    "items",
    "created_at",
}
_KEYS = {
    400: "invalid_payload",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Voucherify's error envelope."""
    short, _, details = message.partition(": ")
    return {
        "code": status,
        "key": _KEYS.get(status, "error"),
        "message": short,
        "details": details or None,
    }


def _amount(body: dict[str, Any], key: str) -> None:
    if key in body and (
        not isinstance(body[key], int) or isinstance(body[key], bool) or body[key] < 0
    ):
        raise ApiError(400, f"Invalid payload: {key} must be a non-negative integer")


def apply(
    state: SandboxState,
    community: dict[str, Any],
    params: dict[str, str],
    _query: dict[str, str],
    body: Any,
    fail_mid_write: bool,
) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid payload: body must be an object")
    unknown = set(body) - FIELDS
    if unknown:
        raise ApiError(400, f"Invalid payload: unknown property {sorted(unknown)[0]}")
    if "status" in body and body["status"] not in STATUSES:
        raise ApiError(400, f"Invalid payload: status must be one of {', '.join(sorted(STATUSES))}")
    _amount(body, "amount")
    _amount(body, "discount_amount")
    for key in ("source_id", "referrer_id"):
        if key in body and (not isinstance(body[key], str) or not js_trim(body[key])):
            raise ApiError(400, f"Invalid payload: {key} must be a non-empty string")
    if "metadata" in body and not isinstance(body["metadata"], dict):
        raise ApiError(400, "Invalid payload: metadata must be an object")
    target = params["orderId"]
    order = next(
        (
            o
            for o in state.data["voucherifyOrders"]
            if o["project"] == community["id"] and target in (o["id"], o.get("source_id"))
        ),
        None,
    )
    if order is None:
        raise ApiError(404, f"Resource not found: Cannot find order with id {target}")
    if fail_mid_write:
        raise ApiError(500, "Internal error")
    changes = {k: v for k, v in body.items() if k != "metadata"}
    metadata = {**(order.get("metadata") or {}), **body.get("metadata", {})}
    order.update(changes, metadata=metadata, updated_at=dt.datetime.now(dt.UTC).isoformat())
    return 200, {**{k: v for k, v in order.items() if k != "project"}, "object": "order"}


ENDPOINT = Endpoint(
    name="voucherify-order",
    method="PUT",
    path="/v1/orders/{orderId}",
    permission="voucherify",
    apply=apply,
    authenticate=app_token,
    error_body=error_body,
)
