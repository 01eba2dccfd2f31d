"""Emulates Capillary ``PUT /v2/transactions`` (shared/api/capillary-transaction-update.txt).

HTTP Basic credentials name the organisation (our community). The transaction is found by id or
number (scoped by type) for the customer named in the query; errors 667/668/669 as documented;
all changes of one request commit together.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from reconcile.sandbox.endpoint import ApiError, Call, Endpoint
from reconcile.sandbox.state import SandboxState

IDENTIFIERS = {
    "mobile",
    "email",
    "externalId",
    "id",
    "wechat",
    "martjackid",
    "fbId",
    "cardnumber",
    "cardExternalId",
}
SOURCES = {
    "INSTORE",
    "WECHAT",
    "MARTJACK",
    "WEB_ENGAGE",
    "ECOMMERCE",
    "JD",
    "TAOBAO",
    "TMALL",
    "FACEBOOK",
    "WEBSITE",
    "OTHERS",
}
TYPES = {"REGULAR", "RETURN", "NOT_INTERESTED", "NOT_INTERESTED_RETURN"}
DELIVERY = {"PLACED", "PROCESSED", "SHIPPED", "DELIVERED", "RETURNED"}
FIELDS = {"id", "number", "type", "extendedFields", "customFields", "deliveryStatus", "lineItems"}


def error_body(error: ApiError) -> dict[str, Any]:
    """Capillary's ``errors[]`` list: its own error number, else the HTTP status."""
    code = error.status if error.code is None else error.code
    return {"errors": [{"status": False, "code": code, "message": error.message}], "warnings": []}


def basic_auth(
    headers: Mapping[str, str], state: SandboxState
) -> tuple[dict[str, Any], frozenset[str]] | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(token).decode().partition(":")
    except ValueError:
        return None
    return state.app_for(f"basic:{username}", password)


def _fail(code: int, message: str) -> ApiError:
    return ApiError(400, message, code)


def _checked_type(body: Any, query: dict[str, str]) -> str:
    """The request's transaction type, once its body and query follow the documented rules."""
    if not isinstance(body, dict) or set(body) - FIELDS:
        raise _fail(400, "Invalid request body")
    kind: str = body.get("type", "REGULAR")
    if kind == "MIXED":
        raise _fail(400, "MIXED transactions are not supported")
    if kind not in TYPES:
        raise _fail(400, "Invalid transaction type")
    name, value = query.get("identifierName"), query.get("identifierValue")
    if kind not in {"NOT_INTERESTED", "NOT_INTERESTED_RETURN"} and (not name or not value):
        raise _fail(400, "identifierName and identifierValue are required")
    if name is not None and name not in IDENTIFIERS:
        raise _fail(400, "Invalid identifierName")
    if "source" in query and query["source"] not in SOURCES:
        raise _fail(400, "Invalid source")
    if "deliveryStatus" in body and body["deliveryStatus"] not in DELIVERY:
        raise _fail(400, "Invalid deliveryStatus")
    if "id" not in body and "number" not in body:
        raise _fail(400, "id or number is required")
    return kind


def _transaction(
    state: SandboxState,
    community: dict[str, Any],
    body: dict[str, Any],
    kind: str,
    query: dict[str, str],
) -> dict[str, Any]:
    """The one stored transaction the request names (667, 668 as documented)."""
    mine = [
        t
        for t in state.table("capillaryTransactions")
        if t["org"] == community["id"] and t["type"] == kind
    ]
    if "id" in body:
        found = [t for t in mine if t["id"] == body["id"]]
    else:
        found = [t for t in mine if t["number"] == body["number"]]
        if len(found) > 1:
            raise _fail(668, "Bill number matches multiple transactions, use id")
    name, value = query.get("identifierName"), query.get("identifierValue")
    if name:
        found = [t for t in found if t.get("customer", {}).get(name) == value]
    if not found:
        raise _fail(667, "Transaction id/number not found for this customer")
    return found[0]


def _updated(
    stored: dict[str, Any], body: dict[str, Any], kind: str, org: dict[str, Any]
) -> dict[str, Any]:
    """A copy of the transaction with the request's changes (669 for an unknown custom field)."""
    transaction = copy.deepcopy(stored)
    for field in body.get("customFields", {}):
        if field not in org.get("customFields", []):
            raise _fail(669, f"Unable to update custom field {field}")
    for field in body.get("extendedFields", {}):
        if field not in org.get("extendedFields", []):
            raise _fail(400, f"Invalid extended field {field}")
    transaction.setdefault("customFields", {}).update(body.get("customFields", {}))
    transaction.setdefault("extendedFields", {}).update(body.get("extendedFields", {}))
    if "deliveryStatus" in body:
        transaction["deliveryStatus"] = body["deliveryStatus"]
    for change in body.get("lineItems", []):
        items = [
            i
            for i in transaction.get("lineItems", [])
            if ("itemCode" in change and i["itemCode"] == change["itemCode"])
            or ("id" in change and i["id"] == change["id"])
        ]
        if not items:
            raise _fail(400, "Line item not found")
        if "outlierStatus" in change:
            if kind in {"RETURN", "NOT_INTERESTED_RETURN"}:
                raise _fail(400, "outlierStatus is not supported for return transactions")
            items[0]["outlierStatus"] = change["outlierStatus"]
        items[0].setdefault("extendedFields", {}).update(change.get("extendedFields", {}))
    return transaction


def apply(state: SandboxState, call: Call) -> tuple[int, dict[str, Any]]:
    kind = _checked_type(call.body, call.query)
    stored = _transaction(state, call.community, call.body, kind, call.query)
    transaction = _updated(stored, call.body, kind, call.community.get("capillary", {}))
    if call.fail_mid_write:
        raise ApiError(500, "Internal server error")
    state.before_write(stored)
    stored.clear()
    stored.update(transaction, updates=transaction.get("updates", 0) + 1)
    return 200, {
        "id": transaction["id"],
        "number": transaction["number"],
        "type": kind,
        "extended_fields": transaction["extendedFields"],
        "custom_fields": transaction["customFields"],
        "customer": transaction.get("customer", {}),
    }


ENDPOINT = Endpoint(
    name="capillary-transaction",
    method="PUT",
    path="/v2/transactions",
    permission="transactions",
    apply=apply,
    authenticate=basic_auth,
    error_body=error_body,
)
