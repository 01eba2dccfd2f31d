"""Emulates Capillary ``GET /v2/transactions/{id}?type=T`` (Get Transaction Details,
shared/api/reads.md).

HTTP Basic credentials name the organisation. ``type`` defaults to REGULAR. The answer has no
``deliveryStatus`` (the documented answer does not carry it); ``billDetails.amount`` and the
line items' codes and fields do. reads.md is silent on a missing transaction: the sandbox answers
404 with Capillary's "not found" number, 667, in its ``errors`` list.
"""

from __future__ import annotations

import json
import zlib

from reconcile.json_types import JSON, JSONObject
from reconcile.sandbox.capillary_transaction import TYPES, basic_auth, error_body
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint
from reconcile.sandbox.records import CAPILLARY_TRANSACTIONS, CapillaryTransactionRecord
from reconcile.sandbox.state import SandboxState


def transaction_answer(stored: CapillaryTransactionRecord) -> JSONObject:
    """One transaction as Capillary's reads answer it (no ``deliveryStatus``)."""
    customer = stored.get("customer", {})
    customer_id = customer.get("id") or zlib.crc32(json.dumps(customer, sort_keys=True).encode())
    modified = stored.get("modified", "2026-01-05 09:00:00")
    return {
        "id": stored["id"],
        "type": stored["type"],
        "customerId": customer_id,
        "billDetails": {"billNumber": stored["number"], "amount": stored.get("amount", 0)},
        "extendedFields": stored.get("extendedFields", {}),
        "customFields": stored.get("customFields", {}),
        "lineItems": [
            {
                "id": item["id"],
                "details": {
                    "itemCode": item["itemCode"],
                    "extendedFields": item.get("extendedFields", {}),
                },
                "outlierStatus": item.get("outlierStatus", "NORMAL"),
            }
            for item in stored.get("lineItems", [])
        ],
        "autoUpdateTime": modified,
        "attribution": {"modifiedDate": modified},
    }


def visible(state: SandboxState, org: str, **where: JSON) -> list[JSONObject]:
    """The organisation's transactions matching ``where``, as reads see them (read lag)."""
    found = []
    for stored in state.find(CAPILLARY_TRANSACTIONS, org=org, **where):
        seen = state.visible(stored)
        if seen is not None:
            found.append(transaction_answer(seen))
    return found


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    kind = call.query.get("type", "REGULAR")
    if kind not in TYPES:
        raise ApiError(400, "Invalid transaction type", 400)
    target = call.params["id"]
    if not target.isdigit():
        raise ApiError(400, "Invalid transaction id", 400)
    found = visible(state, call.community["id"], id=int(target), type=kind)
    if not found:
        raise ApiError(404, "Transaction not found", 667)
    return 200, found[0]


ENDPOINT = Endpoint(
    name="capillary-transaction-read",
    method="GET",
    path="/v2/transactions/{id}",
    permission="transactions",
    apply=apply,
    authenticate=basic_auth,
    error_body=error_body,
)
