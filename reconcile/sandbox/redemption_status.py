"""Emulates Returning.AI ``PUT /v1/redemption-transactions/status``.

Its own reading of shared/api/returning-ai-redemption-status-put.txt: statuses belong to a
community; a refund is allowed only towards a status of the ``refunded`` category and only once
per order (409 after that); every refund is counted so tests can prove none happened twice.
"""

from __future__ import annotations

import re

from reconcile.json_types import JSON
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint, js_trim
from reconcile.sandbox.records import REDEMPTION_STATUSES, REDEMPTION_TRANSACTIONS
from reconcile.sandbox.state import SandboxState

FIELDS = {"transactionId", "statusId", "refundCoins"}


def error_body(error: ApiError) -> AnswerBody:
    return {"status": "error", "message": error.message}


def _validated(body: JSON) -> tuple[str, str, bool]:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    unknown = set(body) - FIELDS
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(sorted(unknown))}")
    transaction = body.get("transactionId")
    if not isinstance(transaction, str) or not js_trim(transaction):
        raise ApiError(400, "transactionId is required")
    status_id = body.get("statusId")
    if status_id is None:
        raise ApiError(400, "statusId is required")
    if not isinstance(status_id, str) or not re.fullmatch(r"[0-9a-fA-F]{24}", status_id):
        raise ApiError(400, "statusId must be a valid ObjectId")
    refund = body.get("refundCoins", False)
    if not isinstance(refund, bool):
        raise ApiError(400, "refundCoins must be a boolean")
    return js_trim(transaction), status_id, refund


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    transaction_id, status_id, refund = _validated(call.body)
    cid = call.community["id"]
    found = state.find(REDEMPTION_TRANSACTIONS, transactionId=transaction_id, communityID=cid)
    if not found:
        raise ApiError(404, "Redemption transaction not found")
    statuses = state.find(REDEMPTION_STATUSES, _id=status_id, communityID=cid)
    if not statuses:
        raise ApiError(404, "Redemption status not found")
    transaction, status = found[0], statuses[0]
    if refund and status.get("category") != "refunded":
        raise ApiError(400, "refundCoins is only allowed when moving to a refunded status")
    if refund and transaction.get("refunded"):
        raise ApiError(409, "Coins for this redemption have already been refunded")
    if call.fail_mid_write:
        raise ApiError(500, "Internal server error")
    history = [*transaction.get("statusHistory", []), transaction.get("statusId")]
    transaction["statusId"] = status_id
    transaction["statusHistory"] = history
    if refund:
        transaction["refunded"] = True
        transaction["refunds"] = transaction.get("refunds", 0) + 1
        transaction["coinsRefunded"] = transaction.get("coinsRefunded", 0) + transaction.get(
            "coins", 0
        )
    data = {
        "transactionId": transaction_id,
        "statusId": status_id,
        "status": {
            "_id": status["_id"],
            "name": status["name"],
            "category": status["category"],
            "color": status["color"],
        },
    }
    return 200, {
        "status": "success",
        "message": "Transaction status updated successfully",
        "data": data,
    }


ENDPOINT = Endpoint(
    name="redemption-status",
    method="PUT",
    path="/v1/redemption-transactions/status",
    permission="updateRedemptionTransactionStatus",
    apply=apply,
    error_body=error_body,
)
