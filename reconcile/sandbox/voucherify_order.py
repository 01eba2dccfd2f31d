"""Emulates Voucherify ``PUT /v1/orders/{orderId}`` (shared/api/voucherify-order-update.txt).

A project (our community) is named by X-App-Id + X-App-Token. The order is found by its ID or its
source ID within the project; the body is validated against the spec's request schema
(:mod:`reconcile.sandbox.voucherify_spec`). The values passed replace the order's: a
``metadata`` object or an ``items`` list replaces the whole old one.
"""

from __future__ import annotations

import datetime as dt

from reconcile.json_types import as_object
from reconcile.sandbox import voucherify_spec
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint, app_token, js_trim
from reconcile.sandbox.records import VOUCHERIFY_ORDERS
from reconcile.sandbox.state import SandboxState

_KEYS = {
    400: "invalid_payload",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
}


def error_body(error: ApiError) -> AnswerBody:
    """Voucherify's error envelope."""
    short, _, details = error.message.partition(": ")
    return {
        "code": error.status,
        "key": _KEYS.get(error.status, "error"),
        "message": short,
        "details": details or None,
    }


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    wrong = voucherify_spec.problem(call.body, voucherify_spec.ORDERS_UPDATE_REQUEST_BODY)
    if wrong:
        raise ApiError(400, f"Invalid payload: {wrong}")
    body = as_object(call.body)  # the schema's type: an object
    for key in ("source_id", "referrer_id"):
        value = body.get(key)
        if isinstance(value, str) and not js_trim(value):
            raise ApiError(400, f"Invalid payload: {key} must be a non-empty string")
    target = call.params["orderId"]
    order = next(
        (
            o
            for o in state.table(VOUCHERIFY_ORDERS)
            if o["project"] == call.community["id"] and target in (o["id"], o.get("source_id"))
        ),
        None,
    )
    if order is None:
        raise ApiError(404, f"Resource not found: Cannot find order with id {target}")
    if call.fail_mid_write:
        raise ApiError(500, "Internal error")
    # "Updates the order by setting the values of the parameters passed; any parameters not
    # provided are left unchanged": a metadata object or an items list replaces the old one.
    state.before_write(order)
    order.update(body, updated_at=dt.datetime.now(dt.UTC).isoformat())
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
