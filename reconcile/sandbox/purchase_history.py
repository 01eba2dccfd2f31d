"""Emulates Returning.AI ``PATCH /v1/purchase-histories/{purchaseHistoryID}``.

Its own reading of shared/api/returning-ai-purchase-history-patch.txt, written apart from the
client's schema on purpose: the two catch each other's mistakes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from reconcile.json_types import JSON
from reconcile.sandbox.endpoint import AnswerBody, ApiError, Call, Endpoint, envelope, js_trim
from reconcile.sandbox.records import (
    PURCHASE_HISTORIES,
    VOUCHERS,
    ProductSnapshot,
    PurchaseHistoryRecord,
    VoucherRecord,
)
from reconcile.sandbox.state import SandboxState

FIELDS = {"redemptionInstructions", "voucherCode", "voucherExpiryDate"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_date(value: JSON) -> dt.date:
    if not isinstance(value, str) or not re.fullmatch(r"\d\d/\d\d/\d\d\d\d", js_trim(value)):
        raise ApiError(400, "voucherExpiryDate must be a valid date in DD/MM/YYYY format")
    day, month, year = (int(p) for p in js_trim(value).split("/"))
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ApiError(400, "voucherExpiryDate must be a valid calendar date") from None


@dataclasses.dataclass(slots=True)
class _Index:
    """Look-ups by key instead of scans: the sandbox must never be the benchmarks' bottleneck."""

    records: dict[tuple[str, str], PurchaseHistoryRecord]
    vouchers: dict[str, VoucherRecord]
    codes: dict[tuple[str, str, str], VoucherRecord]


def _index(state: SandboxState) -> _Index:
    index = state.indexes.get(__name__)
    if not isinstance(index, _Index):
        records = {}
        for record in state.table(PURCHASE_HISTORIES):
            records[(record["communityID"], record["_id"])] = record
            purchase = record.get("purchaseID")
            if purchase:
                records[(record["communityID"], purchase)] = record
        vouchers = {v["_id"]: v for v in state.table(VOUCHERS)}
        codes = {(v["communityID"], v["productID"], v["code"]): v for v in state.table(VOUCHERS)}
        index = state.indexes[__name__] = _Index(records, vouchers, codes)
    return index


@dataclasses.dataclass(frozen=True, slots=True)
class _Update:
    """What a valid body asks for: new instructions, a new code with its expiry, or both."""

    instructions: str | None
    voucher: tuple[str, dt.date] | None


def _validated(body: JSON) -> _Update:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    unknown = set(body) - FIELDS
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(sorted(unknown))}")
    instructions = None
    if "redemptionInstructions" in body:
        text = body["redemptionInstructions"]
        if not isinstance(text, str) or not js_trim(text):
            raise ApiError(400, "redemptionInstructions must be a non-empty string")
        if len(js_trim(text)) > 10000:
            raise ApiError(400, "redemptionInstructions must be at most 10000 characters")
        instructions = js_trim(text)
    has_code, has_date = "voucherCode" in body, "voucherExpiryDate" in body
    if has_code != has_date:
        raise ApiError(400, "voucherCode and voucherExpiryDate must be provided together")
    voucher = None
    if has_code:
        code = body["voucherCode"]
        if not isinstance(code, str) or not js_trim(code):
            raise ApiError(400, "voucherCode must be a non-empty string")
        if len(js_trim(code)) > 512:
            raise ApiError(400, "voucherCode must be at most 512 characters")
        voucher = (js_trim(code), _parse_date(body["voucherExpiryDate"]))
    if instructions is None and voucher is None:
        raise ApiError(400, "At least one valid update group must be provided")
    return _Update(instructions, voucher)


def apply(state: SandboxState, call: Call) -> tuple[int, AnswerBody]:
    update = _validated(call.body)
    index = _index(state)
    cid = call.community["id"]
    record = index.records.get((cid, call.params["purchaseHistoryID"]))
    if record is None:
        raise ApiError(404, "Purchase history not found")
    old_product = record.get("product")
    product: ProductSnapshot = old_product.copy() if old_product else {}
    new_record: PurchaseHistoryRecord = {**record, "product": product}
    now = _now()
    if update.instructions is not None:
        if not old_product:
            raise ApiError(404, "Product snapshot not found for this purchase history")
        product["redemptionInstructions"] = update.instructions
    voucher = None
    new_voucher: VoucherRecord | None = None
    if update.voucher is not None:
        code, expiry_date = update.voucher
        voucher = index.vouchers.get(str(record.get("voucherID")))
        if voucher is None or voucher["communityID"] != cid:
            raise ApiError(404, "Voucher not found for this purchase history")
        holder = index.codes.get((cid, voucher["productID"], code))
        if holder is not None and holder["_id"] != voucher["_id"]:
            raise ApiError(409, "Voucher code already exists for another voucher of this product")
        expiry = expiry_date.strftime("%Y-%m-%dT00:00:00.000Z")
        new_voucher = {
            **voucher,
            "code": code,
            "expiryDate": expiry,
            "updatedAt": now,
        }
        new_record["voucherCode"] = code
        new_record["voucherExpiryDate"] = expiry
    new_record["updatedAt"] = now
    if call.fail_mid_write:
        # The voucher write is prepared, the snapshot write fails: the transaction rolls back.
        raise ApiError(500, "Internal server error: purchase history write failed")
    # Commit: both records replaced together, under the state lock. Each new record has every
    # key of the old one, so updating in place replaces it and keeps its identity (the index
    # holds these very dicts).
    if voucher is not None and new_voucher is not None:
        index.codes.pop((cid, voucher["productID"], voucher["code"]), None)
        voucher.update(new_voucher)
        index.codes[(cid, voucher["productID"], voucher["code"])] = voucher
    record.update(new_record)
    data: dict[str, object] = {**record}
    if voucher is not None:
        data["voucher"] = {
            "_id": voucher["_id"],
            "code": voucher["code"],
            "status": voucher["status"],
            "expiryDate": voucher["expiryDate"],
        }
    return 200, envelope(200, "Update purchase history success.", data)


ENDPOINT = Endpoint(
    name="purchase-history",
    method="PATCH",
    path="/v1/purchase-histories/{purchaseHistoryID}",
    permission="purchase-history",
    apply=apply,
)
