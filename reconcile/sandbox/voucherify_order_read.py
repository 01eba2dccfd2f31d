"""Emulates Voucherify ``GET /v1/orders/{orderId}`` (shared/api/reads.md and the official
OpenAPI in shared/api/voucherify-reads.openapi.json, ``OrdersGetResponseBody``).

The order is found by its Voucherify id or its ``source_id`` within the project. The answer is the
order object with the fields the API computes (totals, item subtotals) and, with the sandbox's
read lag, the order as it was before writes younger than the lag.
"""

from __future__ import annotations

from reconcile.json_types import JSON, JSONObject, as_list, as_object
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint, app_token
from reconcile.sandbox.records import VOUCHERIFY_ORDERS, VoucherifyOrderRecord
from reconcile.sandbox.state import SandboxState
from reconcile.sandbox.voucherify_order import error_body


def _item(item: JSONObject) -> JSONObject:
    """An item as the read answers it: what was written plus the API's own fields."""
    amount = item.get("amount")
    price, quantity = item.get("price"), item.get("quantity", 1)
    if amount is None and isinstance(price, int) and isinstance(quantity, int | float):
        amount = price * quantity
    product = {"id": item.get("product_id"), "source_id": item.get("source_id")}
    sku = {"id": item.get("sku_id")} if item.get("sku_id") else None
    return {
        "object": "order_item",
        **item,
        "amount": amount,
        "subtotal_amount": amount,
        "product": product,
        "sku": sku,
    }


def _less(amount: JSON, discount: JSON) -> JSON:
    """``amount - discount`` (None without an amount), as the API totals an order."""
    if isinstance(amount, int | float) and isinstance(discount, int | float):
        return amount - discount
    return None


def order_answer(order: VoucherifyOrderRecord) -> JSONObject:
    """The order object of ``GET /v1/orders/{orderId}``, computed fields included."""
    amount = order.get("amount")
    discount = order.get("discount_amount") or 0
    answer: JSONObject = {
        "id": order["id"],
        "source_id": order.get("source_id"),
        "created_at": order.get("created_at", "2026-01-05T09:00:00.000Z"),
        "updated_at": order.get("updated_at"),
        "status": order.get("status"),
        "amount": amount,
        "initial_amount": order.get("initial_amount", amount),
        "discount_amount": discount,
        "items_discount_amount": 0,
        "total_discount_amount": discount,
        "total_amount": _less(amount, discount),
        "applied_discount_amount": discount,
        "items_applied_discount_amount": 0,
        "total_applied_discount_amount": discount,
        "items": [_item(as_object(i)) for i in as_list(order.get("items"))],
        "metadata": order.get("metadata", {}),
        "customer_id": order.get("customer_id"),
        "referrer_id": order.get("referrer_id"),
        "object": "order",
    }
    extra = {k: v for k, v in order.items() if k not in answer and k != "project"}
    return {**extra, **answer}


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    target = call.params["orderId"]
    for order in state.table(VOUCHERIFY_ORDERS):
        if order["project"] == call.community["id"] and target in (
            order["id"],
            order.get("source_id"),
        ):
            seen = state.visible(order)
            if seen is not None:
                return 200, order_answer(seen)
    raise ApiError(404, f"Resource not found: Cannot find order with id {target}")


ENDPOINT = Endpoint(
    name="voucherify-order-read",
    method="GET",
    path="/v1/orders/{orderId}",
    permission="voucherify",
    apply=apply,
    authenticate=app_token,
    error_body=error_body,
)
