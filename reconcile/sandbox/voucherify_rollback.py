"""Emulates Voucherify ``POST /v1/redemptions/{redemptionId}/rollback``
(shared/api/voucherify-redemption-rollback.txt). Rollbacks are counted per redemption, so tests
can prove none was sent twice; a redemption can be seeded to answer ``result: FAILURE``."""

from __future__ import annotations

import datetime as dt
import secrets

from reconcile.json_types import as_object
from reconcile.sandbox import voucherify_spec
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint, app_token
from reconcile.sandbox.records import (
    VOUCHERIFY_REDEMPTIONS,
    VOUCHERIFY_ROLLBACKS,
    RollbackAnswer,
    VoucherifyRollbackRecord,
)
from reconcile.sandbox.state import SandboxState
from reconcile.sandbox.voucherify_order import error_body


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    wrong = voucherify_spec.problem(
        {} if call.body is None else call.body, voucherify_spec.ROLLBACK_REQUEST_BODY
    )
    if wrong:
        raise ApiError(400, f"Invalid payload: {wrong}")
    body = as_object(call.body)  # the schema's type: an object (or no body)
    target = call.params["redemptionId"]
    redemption = next(
        (
            r
            for r in state.table(VOUCHERIFY_REDEMPTIONS)
            if r["project"] == call.community["id"] and r["id"] == target
        ),
        None,
    )
    if redemption is None:
        raise ApiError(404, f"Resource not found: Cannot find redemption with id {target}")
    if redemption.get("rolled_back"):
        raise ApiError(
            400, f"Already rolled back: redemption {target} has already been rolled back"
        )
    answer: RollbackAnswer = {
        "id": f"rr_{secrets.token_hex(9)}",
        "object": "redemption_rollback",
        "date": dt.datetime.now(dt.UTC).isoformat(),
        "redemption": target,
        "reason": call.query.get("reason"),
        "tracking_id": call.query.get("tracking_id"),
        "metadata": body.get("metadata"),
        "customer": body.get("customer"),
        "order": body.get("order"),
        "amount": -redemption.get("amount", 0),
        "result": "SUCCESS",
        "status": "SUCCEEDED",
    }
    failure = redemption.get("rollback_failure")
    if failure:
        return 200, {
            **answer,
            "result": "FAILURE",
            "status": "FAILED",
            "failure_code": failure[0],
            "failure_message": failure[1],
        }
    if call.fail_mid_write:
        raise ApiError(500, "Internal error")
    state.before_write(redemption)
    redemption["rolled_back"] = True
    redemption["rollbacks"] = redemption.get("rollbacks", 0) + 1
    # Kept for GET /v1/redemptions/{id} (reconcile/sandbox/voucherify_redemption_read.py).
    stored: VoucherifyRollbackRecord = {**answer, "project": call.community["id"]}
    state.table(VOUCHERIFY_ROLLBACKS).append(stored)
    state.before_write(stored, new=True)
    return 200, answer


ENDPOINT = Endpoint(
    name="voucherify-rollback",
    method="POST",
    path="/v1/redemptions/{redemptionId}/rollback",
    permission="voucherify",
    apply=apply,
    authenticate=app_token,
    error_body=error_body,
)
