"""Capillary ``PUT /v2/transactions``: correct a transaction's fields and its line items.

Rules from ``shared/api/capillary-transaction-update.txt``. Several rows of one transaction
(same ``id`` or ``number``), each naming a line item, form one request with a ``lineItems``
array; every one of those rows reports that request's outcome.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from reconcile.json_types import JSONObject
from reconcile.lazy import pa, pl
from reconcile.operations import capillary_readback, rules
from reconcile.operations.base import (
    Classified,
    Column,
    JsonFields,
    Operation,
    Verdict,
    one_request_per_group,
    request_lines,
    rows_problem,
    with_json_object,
    with_query,
    with_query_string,
)
from reconcile.operations.typed import RawJson
from reconcile.readback import ReadPlan

IDENTIFIERS = (
    "mobile",
    "email",
    "externalId",
    "id",
    "wechat",
    "martjackid",
    "fbId",
    "cardnumber",
    "cardExternalId",
)
SOURCES = (
    "INSTORE",
    "WECHAT",
    "MARTJACK",
    "WEB_ENGAGE",
    "ECOMMERCE",
    "JD",
    "TAOBAO",
    "TMALL",
    "FACEBOOK",
    "WEBSITE",
    "OTHERS",
)
TYPES = ("REGULAR", "RETURN", "NOT_INTERESTED", "NOT_INTERESTED_RETURN")
NO_IDENTIFIER_TYPES = ("NOT_INTERESTED", "NOT_INTERESTED_RETURN")
RETURN_TYPES = ("RETURN", "NOT_INTERESTED_RETURN")
DELIVERY = ("PLACED", "PROCESSED", "SHIPPED", "DELIVERED", "RETURNED")
CUSTOMER_FIELDS = ("identifierName", "identifierValue", "source", "accountId")
#: Fields every row of one transaction must agree on (the key's own fields agree by definition;
#: ``number`` is a field of a transaction named by its ``id``).
TRANSACTION_FIELDS = ("number", "type", "deliveryStatus")
#: The doc's explanations of its error numbers (all HTTP 400).
ERRORS = {
    667: "transaction not found for this customer (667): check id/number and the customer identifier",
    668: "the bill number matches several transactions (668): use the transaction id instead of the number",
    669: "unable to update the custom field (669): it must exist for the organisation with scope LOYALTY_REGISTRATION",
}
MIXED = "MIXED transactions are not supported: their extended and custom fields cannot be updated"


def _enum(values: Sequence[str], what: str) -> pa.Check:
    return rules.check(
        f"is not a {what}: use one of {', '.join(values)}", lambda c: c.is_in(values)
    )


# The doc types identifierValue, accountId, number and lineItems.itemCode as strings (a mobile
# number, a bill number or an item code that a spreadsheet stored as a number may have lost its
# leading zeros: refused unless the job's numeric_ids accepts the column), id and lineItems.id as
# numbers (long, int): a number cell there is its value.
class CapillaryTransaction(Operation):
    name = "capillary-transaction"
    summary = (
        "Capillary: correct a transaction's delivery status, extended/custom fields and line items"
    )
    credentials = ("username", "password")
    conflict_key = ()
    families = ("extendedFields", "customFields", "lineItems.extendedFields")
    request_key = ("community", "target")
    columns = (
        Column("community", True, "required; an organisation (credentials) of the job file"),
        Column(
            "identifierName",
            False,
            f"the customer identifier: one of {', '.join(IDENTIFIERS)}; required unless type is NOT_INTERESTED(_RETURN)",
        ),
        Column(
            "identifierValue",
            False,
            "its value (e.g. the mobile number); required with identifierName",
            kind="id",
        ),
        Column("source", False, f"optional: one of {', '.join(SOURCES)}"),
        Column(
            "accountId",
            False,
            "optional: for sources with several accounts; not for INSTORE",
            kind="id",
        ),
        Column(
            "id",
            False,
            "the transaction id (a whole number); id or number is required",
            kind="number",
        ),
        Column(
            "number", False, "the transaction (bill) number; id or number is required", kind="id"
        ),
        Column(
            "type",
            False,
            f"optional: one of {', '.join(TYPES)} (default REGULAR); MIXED is refused",
        ),
        Column("deliveryStatus", False, f"optional: one of {', '.join(DELIVERY)}"),
        Column(
            "lineItems.itemCode",
            False,
            "a line item to update, by item code (or lineItems.id)",
            kind="id",
        ),
        Column(
            "lineItems.id",
            False,
            "a line item to update, by its id (a whole number)",
            kind="number",
        ),
        Column(
            "lineItems.outlierStatus", False, "optional; not for RETURN or NOT_INTERESTED_RETURN"
        ),
    )

    def column_rules(self, family_columns: Sequence[str]) -> dict[str, pa.Column]:
        """Each column's own rules."""
        return {
            "identifierName": pa.Column(
                str, nullable=True, checks=[_enum(IDENTIFIERS, "customer identifier")]
            ),
            "identifierValue": rules.optional_text(),
            "source": pa.Column(str, nullable=True, checks=[_enum(SOURCES, "source")]),
            "accountId": rules.optional_text(),
            "id": pa.Column(
                str,
                nullable=True,
                checks=[rules.not_excel_number(), *_whole("transaction id", 63)],
            ),
            # A bill number is a path segment when --verify reads it back (getByBillNumber).
            "number": rules.optional_text(rules.not_dot_segment()),
            "type": pa.Column(
                str,
                nullable=True,
                checks=[
                    rules.check(MIXED, lambda c: c != "MIXED"),
                    rules.check(
                        f"is not a transaction type: use one of {', '.join(TYPES)}",
                        lambda c: c.is_in((*TYPES, "MIXED")),
                    ),
                ],
            ),
            "deliveryStatus": pa.Column(
                str, nullable=True, checks=[_enum(DELIVERY, "delivery status")]
            ),
            "lineItems.itemCode": rules.optional_text(),
            "lineItems.id": pa.Column(
                str,
                nullable=True,
                checks=[rules.not_excel_number(), *_whole("line item id", 31)],
            ),
            "lineItems.outlierStatus": rules.optional_text(),
        }

    def row_checks(self, family_columns: Sequence[str]) -> list[pa.Check]:
        """Rules across a row's columns."""
        kind = pl.col("type").fill_null("REGULAR")
        return [
            rules.frame_check(
                "give the transaction's {id} or its {number}",
                pl.col("id").is_not_null() | pl.col("number").is_not_null(),
            ),
            rules.frame_check(
                "{identifierName} and {identifierValue} are required (except for "
                "NOT_INTERESTED and NOT_INTERESTED_RETURN transactions)",
                kind.is_in(NO_IDENTIFIER_TYPES)
                | (
                    pl.col("identifierName").is_not_null() & pl.col("identifierValue").is_not_null()
                ),
            ),
            rules.frame_check(
                "{accountId} does not apply to the INSTORE source: leave it empty",
                ~((pl.col("source") == "INSTORE") & pl.col("accountId").is_not_null()).fill_null(
                    False
                ),
            ),
            rules.frame_check(
                "{lineItems.outlierStatus} is not accepted for RETURN and NOT_INTERESTED_RETURN "
                "transactions: leave it empty",
                ~(kind.is_in(RETURN_TYPES) & pl.col("lineItems.outlierStatus").is_not_null()),
            ),
            rules.frame_check(
                "a line item needs {lineItems.itemCode} or {lineItems.id}",
                pl.col("lineItems.itemCode").is_not_null()
                | pl.col("lineItems.id").is_not_null()
                | (
                    pl.col("lineItems.outlierStatus").is_null()
                    & pl.all_horizontal(
                        pl.lit(True),
                        *(
                            pl.col(c).is_null()
                            for c in family_columns
                            if c.startswith("lineItems.")
                        ),
                    )
                ),
            ),
        ]

    def partition_key(self) -> pl.Expr | None:
        """Rows of one transaction meet in every rule across rows (its request, its checks)."""
        return pl.struct(pl.col("community"), transaction_key())

    def group_errors(self, frame: pl.DataFrame, headers: Mapping[str, str]) -> pl.DataFrame | None:
        """Rows of one transaction (:func:`transaction_key`, the same definition that groups
        them into one request) must agree on its fields and name each line item once; every
        row of a group that does not is invalid, and its message names the group's rows."""
        has_record = pl.col("id").is_not_null() | pl.col("number").is_not_null()
        shared = [
            *TRANSACTION_FIELDS,
            *(c for c in frame.columns if c.startswith(("extendedFields.", "customFields."))),
        ]
        keyed, problems = one_request_per_group(
            frame,
            pl.when(has_record).then(transaction_key()),
            shared,
            headers,
            "transaction (the same id or number, and customer)",
        )
        item = pl.coalesce(
            pl.lit("code:") + pl.col("lineItems.itemCode"),
            pl.lit("id:") + _canonical("lineItems.id"),
        )
        repeated = pl.struct("community", "__group", item.fill_null("")).is_duplicated()
        problems.append(
            rows_problem(
                keyed,
                repeated,
                "the same transaction and line item are on rows {}: keep one row per line "
                "item (which would win depends on the order of the rows)",
            )
        )
        return pl.concat(problems)

    def requests(self, valid: pl.DataFrame, options: Mapping[str, object]) -> pl.DataFrame:
        names = valid.columns
        frame = valid.with_columns(transaction_key().alias("target"))
        item: JsonFields = {
            "itemCode": pl.col("lineItems.itemCode"),
            "id": pl.col("lineItems.id").cast(pl.Int64, strict=False),
            "extendedFields": self.family_members(names, "lineItems.extendedFields"),
            "outlierStatus": pl.col("lineItems.outlierStatus"),
        }
        frame = with_json_object(frame, item, "__item")
        names_item = (
            pl.col("lineItems.itemCode").is_not_null() | pl.col("lineItems.id").is_not_null()
        )
        items = frame.group_by("community", "target", maintain_order=True).agg(
            pl.col("__item").filter(names_item).str.join(",").alias("__items")
        )
        frame = frame.join(items, on=["community", "target"], how="left", maintain_order="left")
        line_items = pl.when(pl.col("__items") != "").then(pl.lit("[") + pl.col("__items") + "]")
        transaction: JsonFields = {
            "id": pl.col("id").cast(pl.Int64, strict=False),
            "number": pl.col("number"),
            "type": pl.col("type"),
            "deliveryStatus": pl.col("deliveryStatus"),
            "extendedFields": self.family_members(names, "extendedFields"),
            "customFields": self.family_members(names, "customFields"),
            "lineItems": RawJson(line_items),
        }
        frame = with_json_object(frame, transaction, "__body")
        frame, query = with_query_string(frame, CUSTOMER_FIELDS)
        return request_lines(
            frame,
            target=pl.col("target"),
            method="PUT",
            path=with_query(pl.lit("/v2/transactions"), query),
            body=pl.col("__body"),
            # Setting values twice leaves the same transaction, but without SKIP-DOWNSTREAM the
            # update fires loyalty actions and events (the doc): those must not run twice.
            repeatable=pl.lit(bool(options.get("skip_downstream"))),
        )

    def auth_headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        token = base64.b64encode(
            f"{credentials['username']}:{credentials['password']}".encode()
        ).decode()
        return {"Authorization": f"Basic {token}"}

    def extra_headers(self, options: Mapping[str, object]) -> dict[str, str]:
        return {"SKIP-DOWNSTREAM": "true"} if options.get("skip_downstream") else {}

    def read_back(self, target: str, path: str, body: JSONObject) -> ReadPlan:
        return capillary_readback.read_back(body)

    def row_item(self, row: Mapping[str, object]) -> str | None:
        return capillary_readback.row_item(row)

    def classify(self, status: int, body: bytes) -> Classified:
        verdict = super().classify(status, body)
        if status == 400:
            code = _error_code(body)
            if code in ERRORS:
                return Classified(Verdict.REJECTED, ERRORS[code])
        return verdict


def _canonical(column: str) -> pl.Expr:
    """A whole-number id as the API reads it: 0100 and 100 are the same id."""
    return pl.col(column).str.strip_chars_start("0").replace("", "0")


def transaction_key() -> pl.Expr:
    """The one definition of "the same transaction", used to group rows into one request and to
    check that they agree: the customer (identifier name and value), source and account, and
    the transaction's ``id`` as a number or, without an id, its bill ``number``; an id and a
    number are never the same transaction. JSON text, so no two keys can run together."""
    record = (
        pl.when(pl.col("id").is_not_null())
        .then(pl.lit("id:") + _canonical("id"))
        .otherwise(pl.lit("number:") + pl.col("number"))
    )
    return pl.struct(record.alias("transaction"), *CUSTOMER_FIELDS).struct.json_encode()


def _whole(what: str, bits: int) -> list[pa.Check]:
    """A whole number that fits the API's field (``long``: 63 bits, ``int``: 31 bits); a value
    Excel wrote in scientific notation gets rules.not_excel_number's message instead."""
    digits = r"^[0-9]+$"
    limit = 2**bits - 1
    return [
        rules.check(
            f"is not a whole number: the {what} is digits only",
            lambda c: c.str.contains(digits) | c.str.contains(rules.EXCEL_NUMBER),
        ),
        rules.check(
            f"is larger than the API accepts for a {what} (at most {limit})",
            lambda c: (
                ~c.str.contains(digits)
                | (c.str.strip_chars_start("0").str.len_chars() < len(str(limit)))
                | (
                    (c.str.strip_chars_start("0").str.len_chars() == len(str(limit)))
                    & (c.str.strip_chars_start("0") <= str(limit))
                )
            ),
        ),
    ]


def _error_code(body: bytes) -> int | None:
    """Capillary errors: ``{"errors": [{"code": 667, "message": ...}]}``."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return code if isinstance(code, int) else None
    return None


OPERATION = CapillaryTransaction()
