"""Generated sandbox records for tests and benchmarks: many orders, each with its own voucher."""

from __future__ import annotations

from reconcile.sandbox.records import COMMUNITIES, PURCHASE_HISTORIES, VOUCHERS, Seed


def order_id(community: str, number: int) -> str:
    """IDs of generated orders: ORDTACME00001 ..."""
    return f"ORDT{community.upper()}{number:05d}"


def add_orders(seed: Seed, per_community: int) -> None:
    """Give every community of ``seed`` ``per_community`` more orders (in place)."""
    vouchers, histories = VOUCHERS.of(seed), PURCHASE_HISTORIES.of(seed)
    for community in COMMUNITIES.of(seed):
        suffix = community["id"][-3:]
        product = f"64e{suffix}{0:018d}"
        for number in range(per_community):
            voucher = f"64f{suffix}{number:018d}"
            vouchers.append(
                {
                    "_id": voucher,
                    "communityID": community["id"],
                    "productID": product,
                    "code": f"T-{community['name']}-{number}",
                    "status": "redeemed",
                    "expiryDate": "2026-06-30T00:00:00.000Z",
                }
            )
            histories.append(
                {
                    "_id": f"65{suffix}{number:019d}",
                    "purchaseID": order_id(community["name"], number),
                    "communityID": community["id"],
                    "voucherID": voucher,
                    "voucherCode": f"T-{number}",
                    "product": {"_id": product, "name": "Test", "redemptionInstructions": "old"},
                }
            )
