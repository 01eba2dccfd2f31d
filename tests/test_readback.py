"""Read-back comparison is pure logic: table tests of normalisation, each operation's declared
read, and the per-row verdicts (reconcile/readback.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reconcile.operations import get_operation
from reconcile.readback import (
    Ambiguous,
    Expect,
    Kind,
    VerifyStatus,
    confirmation,
    differences,
    row_verdict,
)


@pytest.mark.parametrize(
    ("kind", "wrote", "read", "same"),
    [
        (Kind.TEXT, " Ann ", "Ann", True),
        (Kind.TEXT, "Ann", "ann", False),
        (Kind.CASELESS, "paid", "PAID", True),
        (Kind.CASELESS, "PAID", "CANCELED", False),
        (Kind.NUMBER, "10.50", 10.5, True),
        (Kind.NUMBER, 2100, "2100", True),
        (Kind.NUMBER, 2100, 2101, False),
        (Kind.DATE, "2021-12-22T10:13:06.487Z", "2021-12-22T11:13:06.487+01:00", True),
        (Kind.DATE, "2021-12-22T10:13:06Z", "2021-12-22T10:13:07Z", False),
        (Kind.VALUE, "10.50", 10.5, True),
        (Kind.VALUE, "gold", "gold ", True),
        (Kind.VALUE, "gold", None, False),
    ],
)
def test_normalised_comparison(kind: Kind, wrote: Any, read: Any, same: bool) -> None:
    """Values compare as the API holds them: trimmed, case where ignored, numbers, instants."""
    found = differences({"f": read}, [Expect("f", wrote, ("f",), kind)])
    assert (found == []) is same


def test_difference_names_field_and_both_values() -> None:
    """verify_detail's wording: ``status: wrote PAID, read CANCELED``; a missing value is
    'nothing'."""
    found = differences(
        {"status": "CANCELED"},
        [
            Expect("status", "PAID", ("status",)),
            Expect("metadata.tier", "gold", ("metadata", "tier")),
        ],
    )
    assert [str(d) for d in found] == [
        "status: wrote PAID, read CANCELED",
        "metadata.tier: wrote gold, read nothing",
    ]


ORDER = {
    "id": "ord_1",
    "source_id": "acme-1",
    "status": "PAID",
    "amount": 2100,
    "created_at": "2021-12-22T10:13:06.487Z",
    "metadata": {"tier": "gold", "visits": 3, "other": "kept"},
    "items": [
        {"object": "order_item", "source_id": "sku-1", "quantity": 2, "subtotal_amount": 300},
        {"object": "order_item", "product_id": "prod_9", "quantity": 1},
    ],
}


def test_voucherify_order_read_back_matches_and_items_by_key() -> None:
    """The order read names each written field; metadata key by key (other keys ignored);
    items found by their ID wherever they sit in the list."""
    operation = get_operation("voucherify-order")
    body = {
        "status": "paid",
        "amount": 2100,
        "created_at": "2021-12-22T11:13:06.487+01:00",
        "metadata": {"tier": " gold", "visits": 3},
        "items": [
            {"object": "order_item", "product_id": "prod_9", "quantity": 1},
            {"object": "order_item", "source_id": "sku-1", "quantity": 2},
        ],
    }
    plan = operation.read_back("ord_1", "/v1/orders/ord_1", body)
    assert plan is not None and plan.path == "/v1/orders/ord_1"
    assert differences(ORDER, plan.expects) == []
    drifted = {**ORDER, "items": [ORDER["items"][1], {**ORDER["items"][0], "quantity": 5}]}
    [difference] = differences(drifted, plan.expects)
    assert str(difference) == "items[sku-1].quantity: wrote 2, read 5"
    assert difference.item == "source_id:sku-1"


def test_voucherify_order_read_by_new_source_id() -> None:
    """A row that renames an order (new source_id) reads it by the new name."""
    plan = get_operation("voucherify-order").read_back(
        "acme-1", "/v1/orders/acme-1", {"source_id": "acme 2"}
    )
    assert plan is not None and plan.path == "/v1/orders/acme%202"


def test_rollback_reads_the_redemption_status() -> None:
    """A rollback is verified by the redemption reading ROLLED_BACK."""
    plan = get_operation("voucherify-rollback").read_back("r_1", "/v1/redemptions/r_1/rollback", {})
    assert plan is not None and plan.path == "/v1/redemptions/r_1"
    assert differences({"status": "ROLLED_BACK"}, plan.expects) == []
    assert [str(d) for d in differences({"status": "SUCCEEDED"}, plan.expects)] == [
        "status: wrote ROLLED_BACK, read SUCCEEDED"
    ]


CAPILLARY_BODY = {
    "id": 873547608,
    "type": "REGULAR",
    "deliveryStatus": "SHIPPED",
    "extendedFields": {"ship_first_name": "Ann", "checkin_date": "10.50"},
    "lineItems": [
        {"itemCode": "sku_2", "extendedFields": {"ship_last_name": "Lee"}},
        {"id": 7, "outlierStatus": "NORMAL"},
    ],
}
CAPILLARY_READ = {
    "id": 873547608,
    "type": "REGULAR",
    "extendedFields": {"ship_first_name": "Ann", "checkin_date": 10.5},
    "lineItems": [
        {"id": 7, "details": {"itemCode": "x", "extendedFields": {}}, "outlierStatus": "normal"},
        {"id": 8, "details": {"itemCode": "sku_2", "extendedFields": {"ship_last_name": "Lee"}}},
    ],
}


def test_capillary_drift_marks_transaction_rows_or_one_item_row() -> None:
    """A transaction-level drift marks every row; a line item's drift only its own row;
    deliveryStatus is named not verifiable, never guessed."""
    operation = get_operation("capillary-transaction")
    plan = operation.read_back("t", "/v2/transactions", CAPILLARY_BODY)
    assert plan is not None and plan.path == "/v2/transactions/873547608?type=REGULAR"
    assert plan.not_verifiable == ("deliveryStatus",)
    code_row = operation.row_item({"lineItems.itemCode": "sku_2"})
    id_row = operation.row_item({"lineItems.id": "007"})
    clean = row_verdict(plan, differences(CAPILLARY_READ, plan.expects), code_row)
    assert clean.status is VerifyStatus.VERIFIED
    assert clean.detail == "deliveryStatus: not verifiable (the read does not return it)"
    item_drift = {
        **CAPILLARY_READ,
        "lineItems": [
            {**CAPILLARY_READ["lineItems"][0], "outlierStatus": "OUTLIER"},
            CAPILLARY_READ["lineItems"][1],
        ],
    }
    found = differences(item_drift, plan.expects)
    assert row_verdict(plan, found, id_row).status is VerifyStatus.MISMATCH
    assert row_verdict(plan, found, code_row).status is VerifyStatus.VERIFIED
    level = {**CAPILLARY_READ, "extendedFields": {"ship_first_name": "Bob", "checkin_date": 10.5}}
    found = differences(level, plan.expects)
    for row in (code_row, id_row):
        verdict = row_verdict(plan, found, row)
        assert verdict.status is VerifyStatus.MISMATCH
        assert verdict.detail.startswith("extendedFields.ship_first_name: wrote Ann, read Bob")


def test_capillary_by_bill_number_picks_the_written_type() -> None:
    """Without an id, the bill-number read is used and the transaction of the written type
    picked; two of that type are ambiguous, none is not found."""
    plan = get_operation("capillary-transaction").read_back(
        "t", "/v2/transactions", {"number": "B 1", "type": "RETURN", "deliveryStatus": "SHIPPED"}
    )
    assert plan is not None and plan.pick is not None
    assert plan.path == "/v2/transactions/getByBillNumber/B%201"
    answer = {"data": [{"id": 1, "type": "REGULAR"}, {"id": 2, "type": "RETURN"}]}
    assert plan.pick(answer) == {"id": 2, "type": "RETURN"}
    assert plan.pick({"data": []}) is None
    with pytest.raises(Ambiguous):
        plan.pick({"data": [{"id": 2, "type": "RETURN"}, {"id": 3, "type": "RETURN"}]})
    assert row_verdict(plan, [], None).status is VerifyStatus.UNVERIFIABLE


@pytest.mark.parametrize("name", ["purchase-history", "redemption-status"])
def test_returning_ai_has_no_read(name: str) -> None:
    """Returning.AI documents no read: no GET is declared."""
    assert get_operation(name).read_back("x", "/x", {}) is None


def test_returning_ai_confirmed_only_by_an_echoing_answer() -> None:
    """A purchase-history row is confirmed when the PATCH's answer echoes every value sent
    (dates in one form), unverifiable when it differs or was not kept; never verified."""
    echoed = get_operation("purchase-history").echoed(
        {"voucherCode": "NEW-1", "voucherExpiryDate": "31/12/2026"}
    )
    answer = {"data": {"voucherCode": "NEW-1", "voucherExpiryDate": "2026-12-31T00:00:00.000Z"}}
    assert confirmation(echoed, answer).status is VerifyStatus.CONFIRMED
    other = {"data": {"voucherCode": "OLD", "voucherExpiryDate": "2026-12-31T00:00:00.000Z"}}
    assert confirmation(echoed, other).status is VerifyStatus.UNVERIFIABLE
    assert "voucherCode: wrote NEW-1, read OLD" in confirmation(echoed, other).detail
    assert confirmation(echoed, None).status is VerifyStatus.UNVERIFIABLE
    status = get_operation("redemption-status").echoed({"transactionId": "t1", "statusId": "s1"})
    assert (
        confirmation(status, {"data": {"transactionId": "t1", "statusId": "s1"}}).status
        is VerifyStatus.CONFIRMED
    )
