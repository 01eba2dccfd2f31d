"""Read-back of Capillary ``PUT /v2/transactions`` (shared/api/reads.md): by id with
``GET /v2/transactions/{id}?type=``, else by bill number with ``getByBillNumber`` (the one
transaction of the written type). ``deliveryStatus`` is not in either answer: not verifiable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconcile.operations.base import encode_segment
from reconcile.readback import Ambiguous, Expect, Item, Kind, ReadPlan


def read_back(body: Mapping[str, Any]) -> ReadPlan:
    kind = body.get("type") or "REGULAR"
    expects = [
        Expect(f"{family}.{name}", value, (family, name), Kind.VALUE)
        for family in ("extendedFields", "customFields")
        for name, value in (body.get(family) or {}).items()
    ]
    for item in body.get("lineItems") or []:
        expects += _line_item(item)
    unverifiable = ("deliveryStatus",) if body.get("deliveryStatus") is not None else ()
    if body.get("id") is not None:
        path = f"/v2/transactions/{body['id']}?type={kind}"
        return ReadPlan(path, tuple(expects), unverifiable)
    number = str(body["number"])

    def pick(answer: Any) -> Any:
        """The transaction of the written type among those with the bill number."""
        data = answer.get("data") if isinstance(answer, dict) else None
        found = [t for t in data or [] if isinstance(t, dict) and t.get("type") == kind]
        if len(found) > 1:
            raise Ambiguous(f"{len(found)} {kind} transactions have bill number {number}: use id")
        return found[0] if found else None

    path = f"/v2/transactions/getByBillNumber/{encode_segment(number)}"
    return ReadPlan(path, tuple(expects), unverifiable, pick)


def _line_item(item: Mapping[str, Any]) -> list[Expect]:
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
        for field, value in (item.get("extendedFields") or {}).items()
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


def row_item(row: Mapping[str, Any]) -> str | None:
    if row.get("lineItems.itemCode") is not None:
        return f"code:{row['lineItems.itemCode']}"
    if row.get("lineItems.id") is not None:
        return f"id:{int(row['lineItems.id'])}"
    return None
