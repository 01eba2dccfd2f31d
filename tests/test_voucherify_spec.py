"""Voucherify against its official OpenAPI spec: every correction field reachable from the file,
typed metadata, items as one request, and a sandbox that enforces the spec's request schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.sandbox import SandboxServer
from reconcile.sandbox.voucherify_spec import ORDERS_UPDATE_REQUEST_BODY, problem
from tests.helpers import APPS, read_results, run, write_job

ACME = {"X-App-Id": APPS["acme"][0], "X-App-Token": APPS["acme"][1]}


def dry_run(tmp_path: Path, operation: str, *lines: str) -> tuple[int, list[dict[str, Any]]]:
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    job = write_job(tmp_path / "job.toml", operation=operation)
    code = run("run", source, "--job", job, "--out", out, "--dry-run")
    return code, list(read_results(out).iter_rows(named=True))


def body_of(row: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(str(row["request"]).split(" ", 2)[2]))


class TestTypedMetadata:
    """A header's type after a colon sends numbers, booleans, arrays, objects and null."""

    def test_every_type_reaches_the_body_as_json(self, tmp_path: Path) -> None:
        """The rollback doc's own example sends an array; a metadata schema wants numbers."""
        code, [row] = dry_run(
            tmp_path,
            "voucherify-order",
            "community,orderId,metadata.location,metadata.floor:number,metadata.count:integer,"
            "metadata.vip:boolean,metadata.tags:json,metadata.old:json,metadata.a:b:text",
            'acme,ord_acme0001,007,2.5,12,Yes,"[""L2"", {""x"": 1}]",null,x',
        )
        assert code == 0 and row["status"] == "would_apply"
        assert body_of(row) == {
            "metadata": {
                "location": "007",
                "floor": 2.5,
                "count": 12,
                "vip": True,
                "tags": ["L2", {"x": 1}],
                "old": None,
                "a:b": "x",
            }
        }

    @pytest.mark.parametrize(
        ("header", "cell", "words"),
        [
            ("metadata.floor:number", "2,5", "is not a number"),
            ("metadata.floor:number", "007", "is not a number"),
            ("metadata.count:integer", "1.5", "is not a whole number"),
            ("metadata.count:integer", "9007199254740993", "too large for a JSON number"),
            ("metadata.vip:boolean", "maybe", "is not yes or no"),
            ("metadata.tags:json", "[1,", "is not JSON"),
            ("metadata.tags:json", "L2", "is not JSON"),
            # Python's parser reads these; JSON (RFC 8259) has no such values, and a number
            # beyond a double's range becomes Infinity in the API's parser.
            ("metadata.tags:json", "Infinity", "is not JSON"),
            ("metadata.tags:json", "[NaN]", "is not JSON"),
            ("metadata.tags:json", '{"x": -Infinity}', "is not JSON"),
            ("metadata.tags:json", "1e400", "is not JSON"),
            ("metadata.floor:number", "1e400", "beyond the range of a JSON number"),
        ],
    )
    def test_a_cell_that_is_not_its_type_is_invalid(
        self, tmp_path: Path, header: str, cell: str, words: str
    ) -> None:
        """A metadata cell that is not its header's type (or not standard JSON) is a row error
        saying why: nothing the API's parser would read differently is sent."""
        code, [row] = dry_run(
            tmp_path,
            "voucherify-rollback",
            f"community,redemptionId,{header}",
            'acme,r_1,"' + cell.replace('"', '""') + '"',
        )
        assert code == 1 and row["status"] == "invalid"
        assert words in str(row["error"])

    def test_an_unknown_type_stops_the_run_before_anything_is_sent(self, tmp_path: Path) -> None:
        """A typo in a header must not become a metadata key."""
        source = tmp_path / "in.csv"
        source.write_text("community,orderId,metadata.floor:nubmer\nacme,ord_1,2\n")
        job = write_job(tmp_path / "job.toml", operation="voucherify-order")
        assert run("run", source, "--job", job, "--out", tmp_path / "o.csv", "--dry-run") == 2


class TestOrderFields:
    def test_items_of_several_rows_are_one_request(self, tmp_path: Path) -> None:
        """Rows of one order each add an item to one request's items array."""
        code, rows = dry_run(
            tmp_path,
            "voucherify-order",
            "community,orderId,status,initial_amount,created_at,items.source_id,"
            "items.related_object,items.quantity,items.price,items.amount",
            "acme,ord_acme0001,PAID,2100,2021-12-22T10:13:06.487Z,roses_1,product,3,700,2100",
            "acme,ord_acme0001,PAID,2100,2021-12-22T10:13:06.487Z,vase_1,PRODUCT,1,1500,1500",
        )
        assert code == 0
        assert rows[0]["request"] == rows[1]["request"]
        assert body_of(rows[0]) == {
            "status": "PAID",
            "initial_amount": 2100,
            "created_at": "2021-12-22T10:13:06.487Z",
            "items": [
                {
                    "object": "order_item",
                    "source_id": "roses_1",
                    "related_object": "product",
                    "quantity": 3,
                    "price": 700,
                    "amount": 2100,
                },
                {
                    "object": "order_item",
                    "source_id": "vase_1",
                    "related_object": "product",
                    "quantity": 1,
                    "price": 1500,
                    "amount": 1500,
                },
            ],
        }
        assert problem(body_of(rows[0]), ORDERS_UPDATE_REQUEST_BODY) is None

    @pytest.mark.parametrize(
        ("lines", "words"),
        [
            (
                ["acme,ord_1,PAID,sku_a", "acme,ord_1,CANCELED,sku_b"],
                "rows 2, 3 are one order but disagree on 'status'",
            ),
            (["acme,ord_1,PAID,", "acme,ord_1,PAID,"], "the same order is on rows 2, 3"),
        ],
    )
    def test_rows_of_one_order_must_agree(
        self, tmp_path: Path, lines: list[str], words: str
    ) -> None:
        code, rows = dry_run(
            tmp_path, "voucherify-order", "community,orderId,status,items.sku_id", *lines
        )
        assert code == 1
        assert all(r["reconcile_status"] == "invalid" and words in str(r["error"]) for r in rows)

    @pytest.mark.parametrize(
        ("cells", "words"),
        [
            ("created_at=2021-12-22", "is not an ISO 8601 date and time"),
            ("created_at=2021-13-22T10:13:06Z", "is not an ISO 8601 date and time"),
            ("initial_amount=0", "amounts are at least 1"),
            ("items.quantity=2", "an item needs"),
            ("items.related_object=thing", "is not product or sku"),
        ],
    )
    def test_field_rules(self, tmp_path: Path, cells: str, words: str) -> None:
        column, value = cells.split("=")
        code, [row] = dry_run(
            tmp_path, "voucherify-order", f"community,orderId,{column}", f"acme,ord_1,{value}"
        )
        assert code == 1 and words in str(row["error"])


class TestRollbackBody:
    def test_customer_and_order_objects(self, tmp_path: Path) -> None:
        """The spec's rollback body takes the original customer and order."""
        code, [row] = dry_run(
            tmp_path,
            "voucherify-rollback",
            "community,redemptionId,customer.source_id,customer.email,order.source_id",
            "acme,r_acme0001,36_bob,bob@example.com,test_rollback_8",
        )
        assert code == 0
        assert body_of(row) == {
            "customer": {"source_id": "36_bob", "email": "bob@example.com"},
            "order": {"source_id": "test_rollback_8"},
        }


class TestSandboxEnforcesTheSpec:
    def put(self, sandbox: SandboxServer, body: Any) -> httpx.Response:
        return httpx.put(f"{sandbox.url}/v1/orders/ord_acme0001", json=body, headers=ACME)

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ({"items": [{"source_id": "x"}]}, "'object' is a required property"),
            ({"items": [{"object": "order_item", "quantity": "2"}]}, "is not of type 'integer'"),
            ({"created_at": "yesterday"}, "is not a 'date-time'"),
            ({"amount": 0}, "less than the minimum of 1"),
            ({"status": "SHIPPED"}, "is not one of"),
            ({"metadata": ["x"]}, "is not of type 'object'"),
            ({"colour": "red"}, "Additional properties are not allowed"),
        ],
    )
    def test_a_body_that_breaks_the_spec_is_refused(
        self, sandbox: SandboxServer, body: Any, words: str
    ) -> None:
        response = self.put(sandbox, body)
        assert response.status_code == 400
        assert words in response.json()["details"]

    def test_metadata_and_items_are_replaced_not_merged(self, sandbox: SandboxServer) -> None:
        """The update sets the values passed: a one-key metadata correction leaves only that
        key (the README says so)."""
        assert self.put(sandbox, {"metadata": {"a": 1, "b": 2}}).status_code == 200
        assert self.put(sandbox, {"metadata": {"a": 3}}).status_code == 200
        [order] = [
            o for o in sandbox.state.snapshot()["voucherifyOrders"] if o["id"] == "ord_acme0001"
        ]
        assert order["metadata"] == {"a": 3}

    @pytest.mark.usefixtures("keys_in_env")
    def test_a_typed_file_applies_through_the_sandbox(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """Every new field, sent for real, passes the spec's schema and lands as typed."""
        source = tmp_path / "in.csv"
        source.write_text(
            "community,orderId,created_at,metadata.floor:number,metadata.tags:json,"
            "items.product_id,items.quantity\n"
            'acme,ord_acme0001,2021-12-22T10:13:06Z,2,"[""L2""]",prod_1,1\n'
            'acme,ord_acme0001,2021-12-22T10:13:06Z,2,"[""L2""]",prod_2,4\n',
            encoding="utf-8",
        )
        out = tmp_path / "out.csv"
        job = write_job(tmp_path / "job.toml", sandbox.url, operation="voucherify-order")
        assert run("run", source, "--job", job, "--out", out) == 0
        [order] = [
            o for o in sandbox.state.snapshot()["voucherifyOrders"] if o["id"] == "ord_acme0001"
        ]
        assert order["metadata"] == {"floor": 2, "tags": ["L2"]}
        assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [
            ("prod_1", 1),
            ("prod_2", 4),
        ]
        assert len(sandbox.state.requests) == 1
