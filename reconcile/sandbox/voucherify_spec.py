"""The request schemas of Voucherify's OpenAPI spec that the sandbox enforces.

Transcribed from ``voucherifyio/voucherify-openapi``, ``reference/split-openapi-by-tags/``:
``orders.json`` (``OrdersUpdateRequestBody`` = ``OrderBase`` + ``created_at``, ``referrer_id``,
``customer``, ``referrer``; ``OrderItem``; ``Customer``) and ``redemptions.json``
(``RedemptionsRollbackCreateRequestBody``: ``reason``, ``tracking_id``, ``customer``, ``order``,
``metadata``). Types, enums, required fields and ``format: date-time`` are the spec's; the spec
closes no object (``additionalProperties``), so an unknown property is allowed there, except at
the top of a body, which the sandbox refuses so that a misspelt field fails the project's tests
instead of being silently dropped. Two rules come from the endpoint's text doc, which is
stricter than the spec: ``amount`` and ``initial_amount`` are positive.
"""

from __future__ import annotations

import jsonschema

from reconcile.json_types import JSON, JSONObject

_STRING: JSONObject = {"type": "string"}
_INTEGER: JSONObject = {"type": "integer"}
_OBJECT: JSONObject = {"type": "object"}
_NULLABLE_STRING: JSONObject = {"type": ["string", "null"]}
_POSITIVE: JSONObject = {"type": "integer", "minimum": 1}

CUSTOMER: JSONObject = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "source_id": _STRING,
        "name": _STRING,
        "description": _STRING,
        "email": _STRING,
        "phone": _STRING,
        "birthday": {"type": "string", "format": "date"},
        "birthdate": {"type": "string", "format": "date"},
        "address": {"type": ["object", "null"]},
        "metadata": _OBJECT,
    },
}

ORDER_ITEM: JSONObject = {
    "type": "object",
    "properties": {
        "sku_id": _STRING,
        "product_id": _STRING,
        "related_object": {"type": "string", "enum": ["product", "sku"]},
        "source_id": _STRING,
        "quantity": _INTEGER,
        "discount_quantity": _INTEGER,
        "initial_quantity": _INTEGER,
        "amount": _INTEGER,
        "discount_amount": _INTEGER,
        "initial_amount": _INTEGER,
        "price": _INTEGER,
        "product": _OBJECT,
        "sku": _OBJECT,
        "metadata": _OBJECT,
        "object": {"type": "string", "enum": ["order_item"]},
    },
    "required": ["object"],
}

ORDER_BASE_PROPERTIES: JSONObject = {
    "source_id": _NULLABLE_STRING,
    "status": {"type": "string", "enum": ["CREATED", "PAID", "CANCELED", "FULFILLED"]},
    "amount": _POSITIVE,
    "initial_amount": _POSITIVE,
    "discount_amount": _INTEGER,
    "items": {"type": "array", "maxItems": 500, "items": ORDER_ITEM},
    "metadata": _OBJECT,
}

ORDERS_UPDATE_REQUEST_BODY: JSONObject = {
    "type": "object",
    "properties": {
        **ORDER_BASE_PROPERTIES,
        "created_at": {"type": "string", "format": "date-time"},
        "referrer_id": _NULLABLE_STRING,
        "customer": CUSTOMER,
        "referrer": CUSTOMER,
    },
    "additionalProperties": False,
}

ROLLBACK_REQUEST_BODY: JSONObject = {
    "type": "object",
    "properties": {
        "reason": _STRING,
        "tracking_id": _STRING,
        "customer": CUSTOMER,
        "order": {"type": "object", "properties": {"id": _STRING, **ORDER_BASE_PROPERTIES}},
        "metadata": _OBJECT,
    },
    "additionalProperties": False,
}


def problem(body: JSON, schema: JSONObject) -> str | None:
    """The first way ``body`` breaks ``schema``, in Voucherify's words, or None."""
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"Property {where or '(body)'} {error.message}"
