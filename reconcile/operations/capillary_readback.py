"""Read-back of Capillary ``PUT /v2/transactions`` (shared/api/reads.md): by id with
``GET /v2/transactions/{id}?type=``, else by bill number with ``getByBillNumber`` (the one
transaction of the written type). ``deliveryStatus`` is not in either answer: not verifiable.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconcile.json_types import JSON, JSONObject, as_list, as_object
from reconcile.operations.base import encode_segment
from reconcile.readback import Ambiguous, Expect, Item, Kind, ReadPlan


def read_back(body: JSONObject) -> ReadPlan:
    kind = body.get("type") or "REGULAR"
    expects = [
        Expect(f"{family}.{name}", value, (family, name), Kind.VALUE)
        for family in ("extendedFields", "customFields")
        for name, value in as_object(body.get(family)).items()
    ]
    for item in as_list(body.get("lineItems")):
        expects += _line_item(as_object(item))
    unverifiable = ("deliveryStatus",) if body.get("deliveryStatus") is not None else ()
    if body.get("id") is not None:
        path = f"/v2/transactions/{body['id']}?type={kind}"
        return ReadPlan(path, tuple(expects), unverifiable)
    number = str(body["number"])

    def pick(answer: JSON) -> JSON:
        """The transaction of the written type among those with the bill number."""
        data = as_object(answer).get("data")
        found = [t for t in as_list(data) if isinstance(t, dict) and t.get("type") == kind]
        if len(found) > 1:
            raise Ambiguous(f"{len(found)} {kind} transactions have bill number {number}: use id")
        return found[0] if found else None

    path = f"/v2/transactions/getByBillNumber/{encode_segment(number)}"
    return ReadPlan(path, tuple(expects), unverifiable, pick)


def _line_item(item: JSONObject) -> list[Expect]:
    if item.get("itemCode") is not None:
        tag, name, where = (
            f"code:{item['itemCode']}",
            item["itemCode"],
            Item("details.itemCode", item["itemCode"]),
        )
    else:
        tag, name, where = f"id:{item['id']}", item["id"], Item("id", item["id"])
    found = [
        Expect(
            f"lineItems[{name}]", name, ("lineItems", where, *where.key.split(".")), Kind.TEXT, tag
        )
    ]
    found += [
        Expect(
            f"lineItems[{name}].extendedFields.{field}",
            value,
            ("lineItems", where, "details", "extendedFields", field),
            Kind.VALUE,
            tag,
        )
        for field, value in as_object(item.get("extendedFields")).items()
    ]
    if item.get("outlierStatus") is not None:
        found.append(
            Expect(
                f"lineItems[{name}].outlierStatus",
                item["outlierStatus"],
                ("lineItems", where, "outlierStatus"),
                Kind.CASELESS,
                tag,
            )
        )
    return found


def row_item(row: Mapping[str, object]) -> str | None:
    if row.get("lineItems.itemCode") is not None:
        return f"code:{row['lineItems.itemCode']}"
    if row.get("lineItems.id") is not None:
        # The normalised cell is text; the body and so the tag carry it as a number.
        return f"id:{int(str(row['lineItems.id']))}"
    return None
