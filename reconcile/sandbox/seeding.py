"""Generated sandbox records for tests and benchmarks: many orders, each with its own voucher."""

from __future__ import annotations

from typing import Any


def order_id(community: str, number: int) -> str:
    """IDs of generated orders: ORDTACME00001 ..."""
    return f"ORDT{community.upper()}{number:05d}"


def add_orders(seed: dict[str, Any], per_community: int) -> None:
    """Give every community of ``seed`` ``per_community`` more orders (in place)."""
    for community in seed["communities"]:
        suffix = community["id"][-3:]
        product = f"64e{suffix}{0:018d}"
        for number in range(per_community):
            voucher = f"64f{suffix}{number:018d}"
            seed["vouchers"].append(
                {
                    "_id": voucher,
                    "communityID": community["id"],
                    "productID": product,
                    "code": f"T-{community['name']}-{number}",
                    "status": "redeemed",
                    "expiryDate": "2026-06-30T00:00:00.000Z",
                }
            )
            seed["purchaseHistories"].append(
                {
                    "_id": f"65{suffix}{number:019d}",
                    "purchaseID": order_id(community["name"], number),
                    "communityID": community["id"],
                    "voucherID": voucher,
                    "voucherCode": f"T-{number}",
                    "product": {"_id": product, "name": "Test", "redemptionInstructions": "old"},
                }
            )
