"""Emulates Returning.AI ``PATCH /v1/purchase-histories/{purchaseHistoryID}``.

Its own reading of shared/api/returning-ai-purchase-history-patch.txt, written apart from the
client's schema on purpose: the two catch each other's mistakes.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from reconcile.sandbox.endpoint import ApiError, Endpoint, envelope
from reconcile.sandbox.state import SandboxState

FIELDS = {"redemptionInstructions", "voucherCode", "voucherExpiryDate"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_date(value: Any) -> dt.date:
    if not isinstance(value, str) or not re.fullmatch(r"\d\d/\d\d/\d\d\d\d", value.strip()):
        raise ApiError(400, "voucherExpiryDate must be a valid date in DD/MM/YYYY format")
    day, month, year = (int(p) for p in value.strip().split("/"))
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ApiError(400, "voucherExpiryDate must be a valid calendar date") from None


def _validated(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    unknown = set(body) - FIELDS
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(sorted(unknown))}")
    update: dict[str, Any] = {}
    if "redemptionInstructions" in body:
        text = body["redemptionInstructions"]
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "redemptionInstructions must be a non-empty string")
        if len(text.strip()) > 10000:
            raise ApiError(400, "redemptionInstructions must be at most 10000 characters")
        update["redemptionInstructions"] = text.strip()
    has_code, has_date = "voucherCode" in body, "voucherExpiryDate" in body
    if has_code != has_date:
        raise ApiError(400, "voucherCode and voucherExpiryDate must be provided together")
    if has_code:
        code = body["voucherCode"]
        if not isinstance(code, str) or not code.strip():
            raise ApiError(400, "voucherCode must be a non-empty string")
        if len(code.strip()) > 512:
            raise ApiError(400, "voucherCode must be at most 512 characters")
        update["voucherCode"] = code.strip()
        update["voucherExpiryDate"] = _parse_date(body["voucherExpiryDate"])
    if not update:
        raise ApiError(400, "At least one valid update group must be provided")
    return update


def apply(
    state: SandboxState,
    community: dict[str, Any],
    params: dict[str, str],
    _query: dict[str, str],
    body: Any,
    fail_mid_write: bool,
) -> tuple[int, dict[str, Any]]:
    update = _validated(body)
    target = params["purchaseHistoryID"]
    cid = community["id"]
    record = next(
        (
            r
            for r in state.data["purchaseHistories"]
            if r["communityID"] == cid and target in (r["_id"], r.get("purchaseID"))
        ),
        None,
    )
    if record is None:
        raise ApiError(404, "Purchase history not found")
    new_record = {**record, "product": dict(record.get("product") or {})}
    now = _now()
    if "redemptionInstructions" in update:
        if not record.get("product"):
            raise ApiError(404, "Product snapshot not found for this purchase history")
        new_record["product"]["redemptionInstructions"] = update["redemptionInstructions"]
    voucher = None
    new_voucher = None
    if "voucherCode" in update:
        found = state.find("vouchers", _id=record.get("voucherID"), communityID=cid)
        if not found:
            raise ApiError(404, "Voucher not found for this purchase history")
        voucher = found[0]
        clash = [
            v
            for v in state.data["vouchers"]
            if v["communityID"] == cid
            and v["productID"] == voucher["productID"]
            and v["code"] == update["voucherCode"]
            and v["_id"] != voucher["_id"]
        ]
        if clash:
            raise ApiError(409, "Voucher code already exists for another voucher of this product")
        expiry = update["voucherExpiryDate"].strftime("%Y-%m-%dT00:00:00.000Z")
        new_voucher = {
            **voucher,
            "code": update["voucherCode"],
            "expiryDate": expiry,
            "updatedAt": now,
        }
        new_record["voucherCode"] = update["voucherCode"]
        new_record["voucherExpiryDate"] = expiry
    new_record["updatedAt"] = now
    if fail_mid_write:
        # The voucher write is prepared, the snapshot write fails: the transaction rolls back.
        raise ApiError(500, "Internal server error: purchase history write failed")
    # Commit: both records replaced together, under the state lock.
    if voucher is not None and new_voucher is not None:
        voucher.clear()
        voucher.update(new_voucher)
    record.clear()
    record.update(new_record)
    data = {**record}
    if voucher is not None:
        data["voucher"] = {k: voucher[k] for k in ("_id", "code", "status", "expiryDate")}
    return 200, envelope(200, "Update purchase history success.", data)


ENDPOINT = Endpoint(
    name="purchase-history",
    method="PATCH",
    path="/v1/purchase-histories/{purchaseHistoryID}",
    permission="purchase-history",
    apply=apply,
)
