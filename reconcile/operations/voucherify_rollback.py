"""Voucherify ``POST /v1/redemptions/{redemptionId}/rollback``: undo a redemption.

Rules from ``shared/api/voucherify-redemption-rollback.txt``: ``reason`` and ``tracking_id`` go
in the query; ``customer.*`` and ``order.*`` columns (the spec's ``Customer`` and ``Order``) and
``metadata.<key>`` columns (typed: :mod:`reconcile.operations.typed`) in the body. A rollback is not idempotent, and a 2xx
answer whose ``result`` is ``FAILURE`` did not roll anything back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from reconcile.json_types import JSONObject
from reconcile.lazy import pa, pl
from reconcile.operations import rules
from reconcile.operations.base import (
    Classified,
    Column,
    Verdict,
    encode_segment,
    request_lines,
    with_encoded_segment,
    with_json_object,
    with_query,
    with_query_string,
)
from reconcile.operations.voucherify import VoucherifyOperation, voucherify_message
from reconcile.readback import Expect, Kind, ReadPlan

#: The body's ``customer`` and ``order`` objects (the spec's ``Customer`` and ``Order``): which
#: customer and order the redemption was for, and customer details to update with it.
BODY_COLUMNS = (
    ("customer.id", "the customer's Voucherify ID (cust_...)", "id"),
    ("customer.source_id", "the customer's source ID (ignored by the API with customer.id)", "id"),
    ("customer.name", "the customer's name", "text"),
    ("customer.email", "the customer's email", "text"),
    # A phone number is a string: a number cell has lost its leading 0 or +.
    ("customer.phone", "the customer's phone", "id"),
    ("order.id", "the order's Voucherify ID (ord_...)", "id"),
    ("order.source_id", "the order's source ID", "id"),
)


class VoucherifyRollback(VoucherifyOperation):
    name = "voucherify-rollback"
    summary = "Voucherify: roll back (undo) a redemption; never repeated blindly"
    conflict_key = ("community", "redemptionId")
    columns = (
        Column("community", True, "required; a Voucherify project of the job file"),
        Column(
            "redemptionId",
            True,
            "required; the redemption to undo, e.g. r_0ba186c4824e4881e1",
            kind="id",
        ),
        Column("reason", False, "optional; why (sent as the reason query parameter)"),
        Column(
            "tracking_id",
            False,
            "optional; the customer's source_id (query parameter)",
            kind="id",
        ),
        *(
            Column(name, False, f"optional; {rule} (body: {name})", kind=kind)
            for name, rule, kind in BODY_COLUMNS
        ),
    )

    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        return {
            "redemptionId": rules.path_id(),
            "reason": rules.optional_text(),
            "tracking_id": rules.optional_text(),
            **{name: rules.optional_text() for name, _, _ in BODY_COLUMNS},
        }

    def requests(self, valid: pl.DataFrame, options: Mapping[str, object]) -> pl.DataFrame:
        metadata = self.family_members(valid.columns, "metadata")
        frame = with_encoded_segment(valid, "redemptionId", "__segment")
        frame = with_json_object(
            frame,
            {
                "customer": {
                    key: pl.col(f"customer.{key}")
                    for key in ("id", "source_id", "name", "email", "phone")
                },
                "order": {key: pl.col(f"order.{key}") for key in ("id", "source_id")},
                "metadata": metadata,
            },
            "__body",
        )
        frame, query = with_query_string(frame, ("reason", "tracking_id"))
        path = pl.lit("/v1/redemptions/") + pl.col("__segment") + pl.lit("/rollback")
        return request_lines(
            frame,
            target=pl.col("redemptionId"),
            method="POST",
            path=with_query(path, query),
            body=pl.col("__body"),
            # Undoing a redemption twice is not the same as once.
            repeatable=pl.lit(False),
        )

    def classify(self, status: int, body: bytes) -> Classified:
        """A 2xx with ``result: FAILURE`` rolled nothing back: rejected, with the API's reason."""
        verdict = super().classify(status, body)
        if verdict.verdict is Verdict.APPLIED:
            try:
                answer = json.loads(body)
            except ValueError:
                return verdict
            if isinstance(answer, dict) and answer.get("result") == "FAILURE":
                code = answer.get("failure_code") or "failure"
                message = answer.get("failure_message") or "the rollback failed"
                return Classified(Verdict.REJECTED, f"rollback FAILURE ({code}): {message}")
            return verdict
        if status >= 400:
            return Classified(verdict.verdict, voucherify_message(body))
        return verdict

    def read_back(self, target: str, path: str, body: JSONObject) -> ReadPlan:
        """``GET /v1/redemptions/{redemptionId}`` (shared/api/reads.md): a rollback moves the
        redemption to ROLLED_BACK (and lists it under ``related_redemptions.rollbacks``)."""
        return ReadPlan(
            f"/v1/redemptions/{encode_segment(target)}",
            (Expect("status", "ROLLED_BACK", ("status",), Kind.CASELESS),),
        )


OPERATION = VoucherifyRollback()
