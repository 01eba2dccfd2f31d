"""Emulates Capillary ``GET /v2/transactions/getByBillNumber/{billNumber}`` (Retrieve
transaction details with bill number, shared/api/reads.md).

Answers ``{"pagination": {"limit", "offset", "total"}, "data": [transactions]}``: every
transaction of the organisation with that number (several types can share one), each as
``GET /v2/transactions/{id}`` answers it (no ``deliveryStatus``). None is an empty list.
"""

from __future__ import annotations

from reconcile.sandbox.capillary_transaction import basic_auth, error_body
from reconcile.sandbox.capillary_transaction_read import visible
from reconcile.sandbox.endpoint import AnswerBody, Call, Endpoint
from reconcile.sandbox.state import SandboxState


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    found = visible(state, call.community["id"], number=call.params["billNumber"])
    return 200, {"pagination": {"limit": 10, "offset": 0, "total": len(found)}, "data": found}


ENDPOINT = Endpoint(
    name="capillary-bill-number-read",
    method="GET",
    path="/v2/transactions/getByBillNumber/{billNumber}",
    permission="transactions",
    apply=apply,
    authenticate=basic_auth,
    error_body=error_body,
)
