"""Emulates Voucherify ``GET /v1/redemptions/{redemptionId}`` (shared/api/reads.md and the
official OpenAPI in shared/api/voucherify-reads.openapi.json, ``RedemptionsGetResponseBody``).

A redemption id (``r_...``) answers the redemption: ``status`` SUCCEEDED, FAILED or ROLLED_BACK
and ``related_redemptions.rollbacks`` (id, date). A rollback id (``rr_...``) answers the
``redemption_rollback`` object. With the sandbox's read lag, a rollback younger than the lag is
not seen yet.
"""

from __future__ import annotations

from reconcile.json_types import JSON
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint, app_token
from reconcile.sandbox.records import (
    VOUCHERIFY_REDEMPTIONS,
    VOUCHERIFY_ROLLBACKS,
    VoucherifyRedemptionRecord,
)
from reconcile.sandbox.state import SandboxState
from reconcile.sandbox.voucherify_order import error_body


def _rollbacks(state: SandboxState, project: str, redemption: str) -> list[JSON]:
    found: list[JSON] = []
    for rollback in state.find(VOUCHERIFY_ROLLBACKS, project=project, redemption=redemption):
        seen = state.visible(rollback)
        if seen is not None:
            found.append({"id": seen["id"], "date": seen["date"]})
    return found


def _redemption(state: SandboxState, stored: VoucherifyRedemptionRecord) -> AnswerBody:
    if stored.get("rolled_back"):
        status = "ROLLED_BACK"
    else:
        status = "SUCCEEDED" if stored.get("result", "SUCCESS") == "SUCCESS" else "FAILED"
    return {
        "id": stored["id"],
        "object": "redemption",
        "date": stored.get("date", "2026-01-05T09:00:00.000Z"),
        "result": stored.get("result", "SUCCESS"),
        "status": status,
        "amount": stored.get("amount", 0),
        "metadata": stored.get("metadata", {}),
        "related_redemptions": {
            "rollbacks": _rollbacks(state, stored["project"], stored["id"]),
            "redemptions": [],
        },
    }


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    target, project = call.params["redemptionId"], call.community["id"]
    if target.startswith("rr_"):
        for rollback in state.find(VOUCHERIFY_ROLLBACKS, project=project, id=target):
            rolled = state.visible(rollback)
            if rolled is not None:
                return 200, {k: v for k, v in rolled.items() if k != "project"}
    else:
        for stored in state.find(VOUCHERIFY_REDEMPTIONS, project=project, id=target):
            seen = state.visible(stored)
            if seen is not None:
                return 200, _redemption(state, seen)
    raise ApiError(404, f"Resource not found: Cannot find redemption with id {target}")


ENDPOINT = Endpoint(
    name="voucherify-redemption-read",
    method="GET",
    path="/v1/redemptions/{redemptionId}",
    permission="voucherify",
    apply=apply,
    authenticate=app_token,
    error_body=error_body,
)
