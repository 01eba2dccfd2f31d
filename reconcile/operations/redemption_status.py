"""Returning.AI ``PUT /v1/redemption-transactions/status``.

Moves a redemption order to another status, optionally refunding the coins. Rules from
``shared/api/returning-ai-redemption-status-put.txt``; the field is sent as ``statusId`` (the
doc's curl example says ``statusID``, its integration notes confirm ``statusId``).
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
    with_json_object,
)
from reconcile.readback import Expect, Kind

TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0", "")


def refund_flag(column: pl.Expr) -> pl.Expr:
    """The cell as a boolean: true/yes/1 (any case) -> true; false/no/0/empty -> false."""
    return column.str.to_lowercase().is_in(TRUE_WORDS).fill_null(False)


class RedemptionStatus(BearerKeyOperation):
    name = "redemption-status"
    summary = "Returning.AI: move a redemption order to another status, optionally refunding coins"
    conflict_key = ("community", "transactionId")
    columns = (
        Column("community", True, "required; a community of the job file"),
        Column(
            "transactionId",
            True,
            "required; the redemption order ID, e.g. ORD202507013831; trimmed",
            kind="id",
        ),
        Column("statusId", True, "required; the new status: a 24-hex ObjectId", kind="id"),
        Column(
            "refundCoins",
            False,
            "optional; true/false, yes/no or 1/0 in any case; empty = false. A row that refunds "
            "is never re-sent after an uncertain failure without --force",
        ),
    )

    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        return {
            "transactionId": rules.record_id(),
            "statusId": pa.Column(
                str,
                nullable=False,
                checks=[
                    rules.not_empty(),
                    rules.check(
                        "is not a status ID: use the 24-character ID (0-9, a-f) of the status",
                        lambda c: c.str.contains(rules.OBJECT_ID) | (c.str.len_chars() == 0),
                    ),
                ],
            ),
            "refundCoins": pa.Column(
                str,
                nullable=True,
                checks=[
                    rules.check(
                        "is not yes or no: write true/false, yes/no or 1/0 (empty means no)",
                        lambda c: c.str.to_lowercase().is_in((*TRUE_WORDS, *FALSE_WORDS)),
                    )
                ],
            ),
        }

    def requests(self, valid: pl.DataFrame, options: Mapping[str, object]) -> pl.DataFrame:
        refund = refund_flag(pl.col("refundCoins"))
        body = with_json_object(
            valid,
            {
                "transactionId": pl.col("transactionId"),
                "statusId": pl.col("statusId"),
                "refundCoins": refund,
            },
            "__body",
        )
        return request_lines(
            body,
            target=pl.col("transactionId"),
            method="PUT",
            path=pl.lit("/v1/redemption-transactions/status"),
            body=pl.col("__body"),
            # Setting a status twice is harmless; refunding coins twice is not.
            repeatable=~refund,
        )

    def echoed(self, body: JSONObject) -> tuple[Expect, ...]:
        """No read is documented (shared/api/reads.md); the PUT's answer carries
        ``data.transactionId`` and ``data.statusId``."""
        return tuple(
            Expect(field, body[field], ("data", field), Kind.TEXT)
            for field in ("transactionId", "statusId")
            if body.get(field) is not None
        )


OPERATION = RedemptionStatus()
