"""Emulates Capillary ``PUT /v2/transactions`` (shared/api/capillary-transaction-update.txt).

HTTP Basic credentials name the organisation (our community). The transaction is found by id or
number (scoped by type) for the customer named in the query; errors 667/668/669 as documented;
all changes of one request commit together.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping

from reconcile.json_types import JSON, JSONObject, as_list, as_object
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint
from reconcile.sandbox.records import (
    CAPILLARY_TRANSACTIONS,
    CapillaryFields,
    CapillaryTransactionRecord,
    Community,
    Grant,
)
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


def error_body(error: ApiError) -> AnswerBody:
    """Capillary's ``errors[]`` list: its own error number, else the HTTP status."""
    code = error.status if error.code is None else error.code
    return {"errors": [{"status": False, "code": code, "message": error.message}], "warnings": []}


def basic_auth(headers: Mapping[str, str], state: SandboxState) -> Grant | None:
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


def _checked(body: JSON, query: dict[str, str]) -> tuple[JSONObject, str]:
    """The request's body and transaction type, once they and the query follow the documented
    rules."""
    if not isinstance(body, dict) or set(body) - FIELDS or not _shaped(body):
        raise _fail(400, "Invalid request body")
    kind = body.get("type", "REGULAR")
    if kind == "MIXED":
        raise _fail(400, "MIXED transactions are not supported")
    if not isinstance(kind, str) or kind not in TYPES:
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
    return body, kind


def _shaped(body: JSONObject) -> bool:
    """Whether the fields and line items that carry fields are objects, as documented (a body
    that is not so is no update the API could apply)."""
    items = body.get("lineItems", [])
    return (
        all(isinstance(body.get(name, {}), dict) for name in ("customFields", "extendedFields"))
        and isinstance(items, list)
        and all(
            isinstance(item, dict) and isinstance(item.get("extendedFields", {}), dict)
            for item in items
        )
    )


def _transaction(
    state: SandboxState,
    community: Community,
    body: JSONObject,
    kind: str,
    query: dict[str, str],
) -> CapillaryTransactionRecord:
    """The one stored transaction the request names (667, 668 as documented)."""
    mine = [
        t
        for t in state.table(CAPILLARY_TRANSACTIONS)
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
    stored: CapillaryTransactionRecord, body: JSONObject, kind: str, org: CapillaryFields
) -> CapillaryTransactionRecord:
    """A copy of the transaction with the request's changes (669 for an unknown custom field)."""
    transaction = copy.deepcopy(stored)
    custom, extended = as_object(body.get("customFields")), as_object(body.get("extendedFields"))
    for field in custom:
        if field not in org.get("customFields", []):
            raise _fail(669, f"Unable to update custom field {field}")
    for field in extended:
        if field not in org.get("extendedFields", []):
            raise _fail(400, f"Invalid extended field {field}")
    transaction.setdefault("customFields", {}).update(custom)
    transaction.setdefault("extendedFields", {}).update(extended)
    delivery = body.get("deliveryStatus")
    if isinstance(delivery, str):
        transaction["deliveryStatus"] = delivery
    for change in map(as_object, as_list(body.get("lineItems"))):
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
        items[0].setdefault("extendedFields", {}).update(as_object(change.get("extendedFields")))
    return transaction


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    body, kind = _checked(call.body, call.query)
    stored = _transaction(state, call.community, body, kind, call.query)
    transaction = _updated(stored, body, kind, call.community.get("capillary", {}))
    if call.fail_mid_write:
        raise ApiError(500, "Internal server error")
    state.before_write(stored)
    # The copy has every key of the stored record (changes only add or replace): updating in
    # place keeps the record's identity, which the read lag and look-ups rely on.
    stored.update(transaction)
    stored["updates"] = transaction.get("updates", 0) + 1
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
