"""Voucherify ``PUT /v1/orders/{orderId}``: correct an order's status, amounts, IDs, metadata.

Rules from ``shared/api/voucherify-order-update.txt``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandera.polars as pa
import polars as pl

from reconcile.operations import rules
from reconcile.operations.base import Classified, Column, with_encoded_segment, with_json_object
from reconcile.operations.voucherify import VoucherifyOperation, voucherify_message

STATUSES = ("CREATED", "PAID", "CANCELED", "FULFILLED")
FIELDS = ("status", "amount", "discount_amount", "source_id", "referrer_id")


class VoucherifyOrder(VoucherifyOperation):
    name = "voucherify-order"
    summary = "Voucherify: correct an order's status, amounts, source/referrer IDs and metadata"
    conflict_key = ("community", "orderId")
    columns = (
        Column("community", True, "required; a Voucherify project of the job file"),
        Column(
            "orderId",
            True,
            "required; the Voucherify order ID (ord_...) or its source ID",
            kind="id",
        ),
        Column("status", False, f"optional; one of {', '.join(STATUSES)} (any case)"),
        Column(
            "amount",
            False,
            "optional; a positive whole number in the smallest currency unit (2100 for 21.00)",
        ),
        Column("discount_amount", False, "optional; a whole number >= 0, smallest currency unit"),
        Column("source_id", False, "optional; trimmed, non-empty when given"),
        Column("referrer_id", False, "optional; trimmed, non-empty when given", kind="id"),
    )

    def schema(
        self, communities: Collection[str], family_columns: Sequence[str] = ()
    ) -> pa.DataFrameSchema:
        given = [pl.col(f).is_not_null() for f in (*FIELDS, *family_columns)]
        return pa.DataFrameSchema(
            {
                "community": rules.community_column(communities),
                "orderId": pa.Column(
                    str, nullable=False, checks=[rules.not_empty(), rules.not_excel_number()]
                ),
                "status": pa.Column(
                    str,
                    nullable=True,
                    checks=[
                        rules.check(
                            f"is not an order status: use one of {', '.join(STATUSES)}",
                            lambda c: c.str.to_uppercase().is_in(STATUSES),
                        )
                    ],
                ),
                "amount": pa.Column(
                    str, nullable=True, checks=rules.whole_amount_checks(positive=True)
                ),
                "discount_amount": pa.Column(
                    str, nullable=True, checks=rules.whole_amount_checks(positive=False)
                ),
                "source_id": pa.Column(str, nullable=True, checks=[rules.not_empty()]),
                "referrer_id": pa.Column(str, nullable=True, checks=[rules.not_empty()]),
            },
            checks=[
                rules.frame_check(
                    "nothing to change: fill in {status}, {amount}, {discount_amount}, "
                    "{source_id}, {referrer_id} or a metadata.<key> column",
                    pl.any_horizontal(given),
                )
            ],
            strict=False,
        )

    def requests(self, valid: pl.DataFrame, options: Mapping[str, Any]) -> pl.DataFrame:
        metadata = self.family_members(valid.columns, "metadata")
        body = with_json_object(
            with_encoded_segment(valid, "orderId", "__segment"),
            {
                "status": pl.col("status").str.to_uppercase(),
                "amount": pl.col("amount").cast(pl.Int64, strict=False),
                "discount_amount": pl.col("discount_amount").cast(pl.Int64, strict=False),
                "source_id": pl.col("source_id"),
                "referrer_id": pl.col("referrer_id"),
                "metadata": metadata,
            },
            "__body",
        )
        return body.select(
            "__row",
            "community",
            pl.col("orderId").alias("target"),
            pl.lit("PUT").alias("method"),
            (pl.lit("/v1/orders/") + pl.col("__segment")).alias("path"),
            pl.col("__body").alias("body"),
            # An update sets values: the same request twice leaves the same order.
            pl.lit(True).alias("repeatable"),
        )

    def classify(self, status: int, body: bytes) -> Classified:
        verdict = super().classify(status, body)
        if verdict.message and status >= 400:
            return Classified(verdict.verdict, voucherify_message(body))
        return verdict


OPERATION = VoucherifyOrder()
