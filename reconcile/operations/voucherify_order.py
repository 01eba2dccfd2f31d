"""Voucherify ``PUT /v1/orders/{orderId}``: correct an order's status, amounts, IDs, dates, items
and metadata.

Rules from ``shared/api/voucherify-order-update.txt`` and, where it is vague, Voucherify's OpenAPI
spec (``OrdersUpdateRequestBody`` = ``OrderBase`` + ``created_at``, ``referrer_id``; ``OrderItem``).
The update sets the values passed and leaves the others unchanged: a ``metadata`` or ``items``
value replaces the order's whole object or list. Several rows of one order form one request whose
``items`` array has one entry per row, as Capillary line items do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconcile.json_types import JSONObject, as_list, as_object
from reconcile.lazy import pa, pl
from reconcile.operations import rules, typed
from reconcile.operations.base import (
    Classified,
    Column,
    encode_segment,
    one_request_per_group,
    request_lines,
    rows_problem,
    with_encoded_segment,
    with_json_object,
)
from reconcile.operations.voucherify import VoucherifyOperation, voucherify_message
from reconcile.readback import Expect, Item, Kind, ReadPlan

STATUSES = ("CREATED", "PAID", "CANCELED", "FULFILLED")
RELATED = ("product", "sku")
#: ISO 8601 date and time with a zone (the spec's ``date-time``): 2021-12-22T10:13:06.487Z.
DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
ORDER_FIELDS = (
    "status",
    "amount",
    "initial_amount",
    "discount_amount",
    "source_id",
    "referrer_id",
    "created_at",
)
ITEM_TEXT = ("items.source_id", "items.product_id", "items.sku_id")
ITEM_NUMBERS = ("items.quantity", "items.price", "items.amount", "items.discount_amount")
ITEM_FIELDS = (*ITEM_TEXT, "items.related_object", *ITEM_NUMBERS)


def _date_time_check() -> pa.Check:
    """The spec's ``date-time``: ISO 8601 with a zone, and a real calendar date and time."""
    return rules.check(
        "is not an ISO 8601 date and time with its zone: write e.g. 2021-12-22T10:13:06.487Z",
        lambda c: (
            c.str.contains(DATE_TIME)
            & (
                c.is_null()
                | c.str.slice(0, 19)
                .str.strptime(pl.Datetime, "%Y-%m-%dT%H:%M:%S", strict=False)
                .is_not_null()
            )
        ),
    )


def _count_checks() -> list[pa.Check]:
    return [
        rules.check(
            "is not a whole number: write digits only",
            lambda c: c.str.contains(r"^[0-9]{1,15}$"),
        )
    ]


class VoucherifyOrder(VoucherifyOperation):
    name = "voucherify-order"
    summary = (
        "Voucherify: correct an order's status, amounts, IDs, creation date, items and metadata "
        "(metadata and items replace the order's own)"
    )
    conflict_key = ()
    request_key = ("community", "target")
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
            kind="number",
        ),
        Column("initial_amount", False, "optional; like amount (before discounts)", kind="number"),
        Column(
            "discount_amount",
            False,
            "optional; a whole number >= 0, smallest currency unit",
            kind="number",
        ),
        Column("source_id", False, "optional; trimmed, non-empty when given", kind="id"),
        Column("referrer_id", False, "optional; trimmed, non-empty when given", kind="id"),
        Column(
            "created_at",
            False,
            "optional; ISO 8601 date and time with its zone, e.g. 2021-12-22T10:13:06.487Z",
        ),
        Column("items.source_id", False, "an item: your product/SKU ID", kind="id"),
        Column("items.product_id", False, "an item: Voucherify's product ID (prod_...)", kind="id"),
        Column("items.sku_id", False, "an item: Voucherify's SKU ID (sku_...)", kind="id"),
        Column("items.related_object", False, "with items.source_id: product or sku"),
        Column("items.quantity", False, "an item's quantity: a whole number", kind="number"),
        Column("items.price", False, "an item's unit price, smallest currency unit", kind="number"),
        Column(
            "items.amount",
            False,
            "an item's amount (price x quantity), smallest unit",
            kind="number",
        ),
        Column(
            "items.discount_amount",
            False,
            "an item's discount, smallest currency unit",
            kind="number",
        ),
    )

    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        """Each column's own rules."""
        return {
            "orderId": rules.path_id(),
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
            "initial_amount": pa.Column(
                str, nullable=True, checks=rules.whole_amount_checks(positive=True)
            ),
            "discount_amount": pa.Column(
                str, nullable=True, checks=rules.whole_amount_checks(positive=False)
            ),
            "source_id": rules.optional_text(),
            "referrer_id": rules.optional_text(),
            "created_at": pa.Column(str, nullable=True, checks=[_date_time_check()]),
            **{name: rules.optional_text() for name in ITEM_TEXT},
            "items.related_object": pa.Column(
                str,
                nullable=True,
                checks=[
                    rules.check(
                        "is not product or sku", lambda c: c.str.to_lowercase().is_in(RELATED)
                    )
                ],
            ),
            "items.quantity": pa.Column(str, nullable=True, checks=_count_checks()),
            **{
                name: pa.Column(
                    str, nullable=True, checks=rules.whole_amount_checks(positive=False)
                )
                for name in ITEM_NUMBERS[1:]
            },
        }

    def row_checks(self, family_columns: Sequence[str]) -> list[pa.Check]:
        """Rules across a row's columns."""
        given = [pl.col(f).is_not_null() for f in (*ORDER_FIELDS, *ITEM_FIELDS, *family_columns)]
        has_item = pl.any_horizontal(pl.col(f).is_not_null() for f in ITEM_FIELDS)
        names_item = pl.any_horizontal(pl.col(f).is_not_null() for f in ITEM_TEXT)
        return [
            rules.frame_check(
                "nothing to change: fill in {status}, {amount}, {initial_amount}, "
                "{discount_amount}, {source_id}, {referrer_id}, {created_at}, an item or a "
                "metadata.<key> column",
                pl.any_horizontal(given),
            ),
            rules.frame_check(
                "an item needs {items.source_id}, {items.product_id} or {items.sku_id}",
                ~has_item | names_item,
            ),
        ]

    def partition_key(self) -> pl.Expr | None:
        """Rows of one order meet in every rule across rows (its request, its checks)."""
        return pl.struct("community", "orderId")

    def group_errors(self, frame: pl.DataFrame, headers: Mapping[str, str]) -> pl.DataFrame | None:
        """Rows of one order are one request: they agree on the order's fields, and each of
        several rows names an item (else two rows would be one change written twice)."""
        shared = [*ORDER_FIELDS, *(c for c in frame.columns if c.startswith("metadata."))]
        keyed, problems = one_request_per_group(frame, pl.col("orderId"), shared, headers, "order")
        has_item = pl.any_horizontal(pl.col(f).is_not_null() for f in ITEM_FIELDS)
        several = pl.len().over("community", "__group") > 1
        problems.append(
            rows_problem(
                keyed,
                several & ~has_item,
                "the same order is on rows {}: keep one row per order, or give each of its "
                "rows one item (items.*): all of them form one request",
            )
        )
        return pl.concat(problems)

    def requests(self, valid: pl.DataFrame, options: Mapping[str, object]) -> pl.DataFrame:
        has_item = pl.any_horizontal(pl.col(f).is_not_null() for f in ITEM_FIELDS)
        frame = with_json_object(
            with_encoded_segment(valid, "orderId", "__segment"),
            {
                # The spec's OrderItem requires its object type.
                "object": pl.lit("order_item"),
                "source_id": pl.col("items.source_id"),
                "related_object": pl.col("items.related_object").str.to_lowercase(),
                "product_id": pl.col("items.product_id"),
                "sku_id": pl.col("items.sku_id"),
                "quantity": pl.col("items.quantity").cast(pl.Int64, strict=False),
                "price": pl.col("items.price").cast(pl.Int64, strict=False),
                "amount": pl.col("items.amount").cast(pl.Int64, strict=False),
                "discount_amount": pl.col("items.discount_amount").cast(pl.Int64, strict=False),
            },
            "__item",
        )
        items = frame.group_by("community", "orderId", maintain_order=True).agg(
            pl.col("__item").filter(has_item).str.join(",").alias("__items")
        )
        frame = frame.join(items, on=["community", "orderId"], how="left", maintain_order="left")
        frame = frame.with_columns(
            pl.when(pl.col("__items") != "")
            .then(pl.lit("[") + pl.col("__items") + pl.lit("]"))
            .alias("__items_json")
        )
        body = with_json_object(
            frame,
            {
                "status": pl.col("status").str.to_uppercase(),
                "amount": pl.col("amount").cast(pl.Int64, strict=False),
                "initial_amount": pl.col("initial_amount").cast(pl.Int64, strict=False),
                "discount_amount": pl.col("discount_amount").cast(pl.Int64, strict=False),
                "source_id": pl.col("source_id"),
                "referrer_id": pl.col("referrer_id"),
                "created_at": pl.col("created_at"),
                "items": typed.RawJson(pl.col("__items_json")),
                "metadata": self.family_members(valid.columns, "metadata"),
            },
            "__body",
        )
        return request_lines(
            body,
            target=pl.col("orderId"),
            method="PUT",
            path=pl.lit("/v1/orders/") + pl.col("__segment"),
            body=pl.col("__body"),
            # An update sets values: the same request twice leaves the same order.
            repeatable=pl.lit(True),
        )

    def classify(self, status: int, body: bytes) -> Classified:
        verdict = super().classify(status, body)
        if verdict.message and status >= 400:
            return Classified(verdict.verdict, voucherify_message(body))
        return verdict

    def read_back(self, target: str, path: str, body: JSONObject) -> ReadPlan:
        """``GET /v1/orders/{orderId}`` (shared/api/reads.md): the order's fields by name,
        metadata key by key for the keys written, items matched by their ID."""
        # A new source_id renames the order: read it by its Voucherify id or its new name.
        source_id = body.get("source_id")
        read_id = target if target.startswith("ord_") or not source_id else str(source_id)
        expects = [
            Expect(field, body[field], (field,), kind)
            for field, kind in READ_FIELDS.items()
            if body.get(field) is not None
        ]
        expects += [
            Expect(f"metadata.{key}", value, ("metadata", key), Kind.VALUE)
            for key, value in as_object(body.get("metadata")).items()
        ]
        for item in as_list(body.get("items")):
            expects += _item_expects(as_object(item))
        return ReadPlan(f"/v1/orders/{encode_segment(read_id)}", tuple(expects))

    def row_item(self, row: Mapping[str, object]) -> str | None:
        return next((f"{k[6:]}:{row[k]}" for k in ITEM_TEXT if row.get(k) is not None), None)


#: The order's own fields a write sets, and how the read's value compares.
READ_FIELDS = {
    "status": Kind.CASELESS,
    "amount": Kind.NUMBER,
    "initial_amount": Kind.NUMBER,
    "discount_amount": Kind.NUMBER,
    "source_id": Kind.TEXT,
    "referrer_id": Kind.TEXT,
    "created_at": Kind.DATE,
}


def _item_expects(item: JSONObject) -> list[Expect]:
    """One written item: found in the read by the first of its IDs, then each number."""
    key = next(k for k in ("source_id", "product_id", "sku_id") if item.get(k) is not None)
    tag, where = f"{key}:{item[key]}", ("items", Item(key, item[key]))
    found = [Expect(f"items[{item[key]}]", item[key], (*where, key), Kind.TEXT, tag)]
    return found + [
        Expect(f"items[{item[key]}].{field}", item[field], (*where, field), Kind.NUMBER, tag)
        for field in ("quantity", "price", "amount", "discount_amount")
        if item.get(field) is not None
    ]


OPERATION = VoucherifyOrder()
