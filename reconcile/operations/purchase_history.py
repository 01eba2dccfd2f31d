"""Returning.AI ``PATCH /v1/purchase-histories/{purchaseHistoryID}``.

Corrects an order's redemption instructions and/or its voucher code + expiry date (a pair).
Rules from ``shared/api/returning-ai-purchase-history-patch.txt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconcile.json_types import JSONObject
from reconcile.lazy import pa, pl
from reconcile.operations import rules
from reconcile.operations.base import (
    BearerKeyOperation,
    Column,
    request_lines,
    with_encoded_segment,
    with_json_object,
)
from reconcile.readback import Expect, Kind

ORDER_ID = r"^ORD[A-Za-z0-9]+$"
MAX_INSTRUCTIONS = 10_000
MAX_VOUCHER_CODE = 512
BODY_FIELDS = ("redemptionInstructions", "voucherCode", "voucherExpiryDate")


class PurchaseHistory(BearerKeyOperation):
    name = "purchase-history"
    summary = "Returning.AI: correct an order's redemption instructions or voucher code + expiry"
    conflict_key = ("community", "purchaseHistoryID")
    columns = (
        Column("community", True, "required; a community of the job file"),
        Column(
            "purchaseHistoryID",
            True,
            "required; a 24-hex Mongo ObjectId or an order ID like ORD202641612055614747",
            kind="id",
        ),
        Column(
            "redemptionInstructions",
            False,
            f"optional; trimmed; non-empty when given; at most {MAX_INSTRUCTIONS} characters",
        ),
        Column(
            "voucherCode",
            False,
            f"trimmed; non-empty when given; at most {MAX_VOUCHER_CODE} characters; "
            "given together with voucherExpiryDate",
            kind="id",
        ),
        Column(
            "voucherExpiryDate",
            False,
            "a real calendar date written DD/MM/YYYY; given together with voucherCode",
            kind="date",
        ),
    )

    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        return {
            "purchaseHistoryID": pa.Column(
                str,
                nullable=False,
                checks=[
                    rules.not_empty(),
                    rules.not_excel_number(),
                    rules.not_dot_segment(),
                    rules.check(
                        "is not a purchase history ID: use the 24-character ID "
                        "(0-9, a-f) or the order ID starting with ORD",
                        lambda c: (
                            c.str.contains(rules.OBJECT_ID)
                            | c.str.contains(ORDER_ID)
                            | c.is_in([".", ".."])
                            | c.str.contains(rules.EXCEL_NUMBER)
                            | (c.str.len_chars() == 0)
                        ),
                    ),
                ],
            ),
            "redemptionInstructions": pa.Column(
                str,
                nullable=True,
                checks=[rules.not_empty(), rules.max_chars(MAX_INSTRUCTIONS)],
            ),
            "voucherCode": pa.Column(
                str,
                nullable=True,
                checks=[rules.not_empty(), rules.max_chars(MAX_VOUCHER_CODE)],
            ),
            "voucherExpiryDate": pa.Column(str, nullable=True, checks=rules.dmy_date_checks()),
        }

    def row_checks(self, family_columns: Sequence[str]) -> list[pa.Check]:
        code, expiry = pl.col("voucherCode"), pl.col("voucherExpiryDate")
        return [
            rules.frame_check(
                "{voucherCode} and {voucherExpiryDate} go together: "
                "fill in both or leave both empty",
                code.is_null() == expiry.is_null(),
            ),
            rules.frame_check(
                "nothing to change: fill in {redemptionInstructions}, "
                "or {voucherCode} with {voucherExpiryDate}",
                pl.any_horizontal(pl.col(f).is_not_null() for f in BODY_FIELDS),
            ),
        ]

    def requests(self, valid: pl.DataFrame, options: Mapping[str, object]) -> pl.DataFrame:
        encoded = with_encoded_segment(valid, "purchaseHistoryID", "__segment")
        encoded = with_json_object(encoded, {f: pl.col(f) for f in BODY_FIELDS}, "__body")
        return request_lines(
            encoded,
            target=pl.col("purchaseHistoryID"),
            method="PATCH",
            path=pl.lit("/v1/purchase-histories/") + pl.col("__segment"),
            body=pl.col("__body"),
            # Setting values is idempotent: the same request twice leaves the same state.
            repeatable=pl.lit(True),
        )

    def echoed(self, body: JSONObject) -> tuple[Expect, ...]:
        """No read is documented (shared/api/reads.md); the PATCH's 200 answer carries the
        record as stored: ``data.voucherCode``, ``data.voucherExpiryDate`` (ISO),
        ``data.product.redemptionInstructions``."""
        found = []
        if body.get("redemptionInstructions") is not None:
            found.append(
                Expect(
                    "redemptionInstructions",
                    body["redemptionInstructions"],
                    ("data", "product", "redemptionInstructions"),
                )
            )
        if body.get("voucherCode") is not None:
            found.append(Expect("voucherCode", body["voucherCode"], ("data", "voucherCode")))
        expiry = body.get("voucherExpiryDate")
        if isinstance(expiry, str):  # DD/MM/YYYY, as the rules accept it
            day, month, year = expiry.split("/")
            iso = f"{year}-{month}-{day}T00:00:00.000Z"
            found.append(Expect("voucherExpiryDate", iso, ("data", "voucherExpiryDate"), Kind.DATE))
        return tuple(found)


OPERATION = PurchaseHistory()
