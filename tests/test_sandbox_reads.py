"""The sandbox's reads (shared/api/reads.md) over real HTTP: shapes, read lag, other writers."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from reconcile.sandbox import SandboxServer

VOUCHERIFY = {"X-App-Id": "app-acme-0001", "X-App-Token": "sandbox-token-acme"}
CAPILLARY = {
    "Authorization": "Basic " + base64.b64encode(b"acme.api:sandbox-password-acme").decode()
}


def call(
    sandbox: SandboxServer, method: str, path: str, headers: dict[str, str], **kw: Any
) -> httpx.Response:
    return httpx.request(method, f"{sandbox.url}{path}", headers=headers, timeout=10, **kw)


def test_order_read_by_id_and_source_id_with_computed_fields(sandbox: SandboxServer) -> None:
    """GET /v1/orders/{id} answers the order by its id or source_id, computed fields included."""
    by_id = call(sandbox, "GET", "/v1/orders/ord_acme0001", VOUCHERIFY)
    by_source = call(sandbox, "GET", "/v1/orders/acme-order-1", VOUCHERIFY)
    assert by_id.status_code == by_source.status_code == 200
    assert by_id.json() == by_source.json()
    order = by_id.json()
    assert order["object"] == "order" and order["status"] == "CREATED"
    assert order["total_amount"] == order["amount"] - order["discount_amount"] == 1000
    assert "project" not in order


def test_order_read_shows_the_write_and_other_projects_are_404(sandbox: SandboxServer) -> None:
    """A PUT's values are what the GET answers; another project's credentials see 404."""
    items = [{"object": "order_item", "source_id": "sku-1", "quantity": 2, "price": 150}]
    put = call(
        sandbox,
        "PUT",
        "/v1/orders/acme-order-1",
        VOUCHERIFY,
        json={"status": "PAID", "items": items},
    )
    assert put.status_code == 200
    order = call(sandbox, "GET", "/v1/orders/acme-order-1", VOUCHERIFY).json()
    assert order["status"] == "PAID"
    assert order["items"][0]["subtotal_amount"] == 300
    assert order["items"][0]["object"] == "order_item"
    globex = {"X-App-Id": "app-globex-0001", "X-App-Token": "sandbox-token-globex"}
    missing = call(sandbox, "GET", "/v1/orders/acme-order-1", globex)
    assert missing.status_code == 404 and missing.json()["key"] == "not_found"
    assert call(sandbox, "GET", "/v1/orders/acme-order-1", {}).status_code == 401


def test_redemption_read_before_and_after_a_rollback(sandbox: SandboxServer) -> None:
    """A redemption reads SUCCEEDED, then ROLLED_BACK with the rollback listed; the rr_ id reads
    the rollback object."""
    before = call(sandbox, "GET", "/v1/redemptions/r_acme0001", VOUCHERIFY).json()
    assert before["status"] == "SUCCEEDED"
    assert before["related_redemptions"]["rollbacks"] == []
    rollback = call(sandbox, "POST", "/v1/redemptions/r_acme0001/rollback", VOUCHERIFY).json()
    after = call(sandbox, "GET", "/v1/redemptions/r_acme0001", VOUCHERIFY).json()
    assert after["status"] == "ROLLED_BACK"
    assert after["related_redemptions"]["rollbacks"] == [
        {"id": rollback["id"], "date": rollback["date"]}
    ]
    read = call(sandbox, "GET", f"/v1/redemptions/{rollback['id']}", VOUCHERIFY).json()
    assert read["object"] == "redemption_rollback"
    assert read["result"] == "SUCCESS" and read["redemption"] == "r_acme0001"
    assert call(sandbox, "GET", "/v1/redemptions/rr_nothing", VOUCHERIFY).status_code == 404


def test_capillary_read_by_id_has_no_delivery_status(sandbox: SandboxServer) -> None:
    """GET /v2/transactions/{id}?type= answers the documented fields, never deliveryStatus."""
    put = call(
        sandbox,
        "PUT",
        "/v2/transactions",
        CAPILLARY,
        params={"identifierName": "mobile", "identifierValue": "919986000586"},
        json={
            "id": 873547608,
            "type": "REGULAR",
            "deliveryStatus": "SHIPPED",
            "extendedFields": {"ship_first_name": "Ann"},
            "lineItems": [{"itemCode": "sku_234_3", "extendedFields": {"ship_last_name": "Lee"}}],
        },
    )
    assert put.status_code == 200, put.text
    read = call(sandbox, "GET", "/v2/transactions/873547608", CAPILLARY, params={"type": "REGULAR"})
    assert read.status_code == 200
    body = read.json()
    assert "deliveryStatus" not in body
    assert body["billDetails"]["billNumber"] == "BILL-2026-0041"
    assert body["extendedFields"] == {"ship_first_name": "Ann"}
    [_, item] = body["lineItems"]
    assert item["details"] == {"itemCode": "sku_234_3", "extendedFields": {"ship_last_name": "Lee"}}
    wrong_type = call(
        sandbox, "GET", "/v2/transactions/873547608", CAPILLARY, params={"type": "RETURN"}
    )
    assert wrong_type.status_code == 404
    assert wrong_type.json()["errors"][0]["code"] == 667


def test_capillary_read_by_bill_number_lists_every_match(sandbox: SandboxServer) -> None:
    """getByBillNumber answers pagination + data, each transaction in the by-id shape."""
    body = call(sandbox, "GET", "/v2/transactions/getByBillNumber/BILL-2026-0041", CAPILLARY).json()
    assert body["pagination"]["total"] == len(body["data"]) >= 1
    assert {t["id"] for t in body["data"]} >= {873547608}
    assert all("deliveryStatus" not in t for t in body["data"])
    none = call(sandbox, "GET", "/v2/transactions/getByBillNumber/NO-SUCH", CAPILLARY).json()
    assert none == {"pagination": {"limit": 10, "offset": 0, "total": 0}, "data": []}


def test_read_lag_hides_a_write_until_it_has_passed(sandbox: SandboxServer) -> None:
    """With read_lag, a GET right after a PUT shows the old record; after the lag, the new."""
    sandbox.state.faults.read_lag = 0.6
    call(sandbox, "PUT", "/v1/orders/acme-order-2", VOUCHERIFY, json={"status": "PAID"})
    assert call(sandbox, "GET", "/v1/orders/acme-order-2", VOUCHERIFY).json()["status"] == "CREATED"
    rollback = call(sandbox, "POST", "/v1/redemptions/r_acme0002/rollback", VOUCHERIFY).json()
    assert call(sandbox, "GET", f"/v1/redemptions/{rollback['id']}", VOUCHERIFY).status_code == 404
    time.sleep(0.7)
    assert call(sandbox, "GET", "/v1/orders/acme-order-2", VOUCHERIFY).json()["status"] == "PAID"
    assert call(sandbox, "GET", f"/v1/redemptions/{rollback['id']}", VOUCHERIFY).status_code == 200


def test_other_writer_changes_a_record_without_a_request(sandbox: SandboxServer) -> None:
    """``state.other_writer`` changes a record as another system would: reads see it, the
    request log does not."""
    changed = sandbox.state.other_writer(
        "voucherifyOrders", {"id": "ord_acme0001"}, status="CANCELED"
    )
    assert changed == 1
    assert sandbox.state.requests == []
    assert (
        call(sandbox, "GET", "/v1/orders/ord_acme0001", VOUCHERIFY).json()["status"] == "CANCELED"
    )


def test_reads_count_against_the_writes_rate_limit(sandbox: SandboxServer) -> None:
    """A GET takes a token from the same per-credential bucket as a PUT: the next call is 429."""
    sandbox.state.faults.rate_per_second = 0.5
    sandbox.state.faults.burst = 1
    assert call(sandbox, "GET", "/v1/orders/ord_acme0001", VOUCHERIFY).status_code == 200
    limited = call(sandbox, "PUT", "/v1/orders/ord_acme0001", VOUCHERIFY, json={"status": "PAID"})
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert [r["method"] for r in sandbox.state.requests] == ["GET", "PUT"]
