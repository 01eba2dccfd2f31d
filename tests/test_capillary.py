"""Capillary transaction updates: rules, line items as one request, sandbox outcomes over HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.operations import OPERATIONS, get_operation
from reconcile.sandbox import SandboxServer
from tests.helpers import read_results, run, run_sample, validation_errors

OP = get_operation("capillary-transaction")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"acme.api:sandbox-password-acme").decode()}


def tx(**cells: str | None) -> dict[str, str | None]:
    return {
        "community": "acme",
        "identifierName": "mobile",
        "identifierValue": "919986000586",
        "id": "873547608",
        **cells,
    }


class TestRules:
    @pytest.mark.parametrize(
        "cells",
        [
            {"deliveryStatus": "SHIPPED"},
            {"id": None, "number": "BILL-1"},
            {"id": None, "number": "..."},
            {"type": "RETURN", "lineItems.itemCode": "sku"},
            {"identifierName": None, "identifierValue": None, "type": "NOT_INTERESTED"},
            {"identifierName": None, "identifierValue": None, "type": "NOT_INTERESTED_RETURN"},
            {"source": "MARTJACK", "accountId": "A-1"},
            {"lineItems.id": "12", "lineItems.outlierStatus": "NORMAL"},
        ],
    )
    def test_valid(self, cells: dict[str, str | None]) -> None:
        assert validation_errors(OP, tx(**cells)) == [None]

    @pytest.mark.parametrize(
        ("cells", "words"),
        [
            ({"type": "MIXED"}, "MIXED transactions are not supported"),
            ({"type": "SALE"}, "is not a transaction type"),
            ({"identifierName": "phone"}, "is not a customer identifier"),
            ({"identifierValue": None}, "are required (except for NOT_INTERESTED"),
            ({"source": "SHOP"}, "is not a source"),
            ({"source": "INSTORE", "accountId": "A-1"}, "does not apply to the INSTORE source"),
            ({"id": None}, "give the transaction's 'id' or its 'number'"),
            # --verify reads a bill number back as a path segment (getByBillNumber/{number}).
            ({"id": None, "number": " .. "}, "is only dots"),
            ({"id": "12a"}, "is not a whole number: the transaction id is digits only"),
            ({"id": "8.73548E+08"}, "turned into a number by Excel"),
            ({"deliveryStatus": "LOST"}, "is not a delivery status"),
            (
                {"type": "RETURN", "lineItems.itemCode": "s", "lineItems.outlierStatus": "NORMAL"},
                "'lineItems.outlierStatus' is not accepted for RETURN",
            ),
            ({"lineItems.outlierStatus": "NORMAL"}, "a line item needs"),
            ({"lineItems.id": "x"}, "is not a whole number: the line item id is digits only"),
            ({"lineItems.id": "1.2E+5"}, "is not a whole number"),
            ({"lineItems.id": "1.2E+15"}, "turned into a number by Excel"),
            ({"id": "9999999999999999999"}, "is larger than the API accepts"),
            ({"lineItems.id": "2147483648"}, "is larger than the API accepts"),
        ],
    )
    def test_invalid(self, cells: dict[str, str | None], words: str) -> None:
        [error] = validation_errors(OP, tx(**cells))
        assert error is not None and words in error

    def test_rows_of_one_transaction_must_agree(self) -> None:
        errors = validation_errors(
            OP,
            tx(deliveryStatus="SHIPPED", **{"lineItems.itemCode": "a"}),
            tx(deliveryStatus="DELIVERED", **{"lineItems.itemCode": "b"}),
            tx(id="999", deliveryStatus="DELIVERED"),
        )
        assert errors[2] is None
        assert all(e is not None and "disagree on 'deliveryStatus'" in e for e in errors[:2])

    def test_the_same_line_item_twice(self) -> None:
        errors = validation_errors(
            OP,
            tx(**{"lineItems.itemCode": "a"}),
            tx(**{"lineItems.itemCode": "a"}),
            tx(**{"lineItems.itemCode": "b"}),
        )
        assert errors[2] is None and all(
            "keep one row per line item" in (e or "") for e in errors[:2]
        )

    def test_a_transaction_without_line_items_on_two_rows(self) -> None:
        assert all(
            "keep one row per line item" in (e or "") for e in validation_errors(OP, tx(), tx())
        )


def test_operations_lists_all_five(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("operations") == 0
    out = capsys.readouterr().out
    names = [
        "purchase-history",
        "redemption-status",
        "voucherify-order",
        "voucherify-rollback",
        "capillary-transaction",
    ]
    assert sorted(OPERATIONS) == sorted(names)
    for name in names:
        assert f"{name}: " in out
    assert "lineItems.extendedFields.<key>" in out


def test_line_items_become_one_request(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    assert (
        run_sample(
            tmp_path,
            "capillary-transaction.csv",
            "capillary-transaction.example.toml",
            out,
            "--dry-run",
        )
        == 0
    )
    requests = read_results(out).get_column("request").to_list()
    assert requests[0] == requests[1]
    method, path, body = requests[0].split(" ", 2)
    assert (method, path) == (
        "PUT",
        "/v2/transactions?identifierName=mobile&identifierValue=919986000586&source=INSTORE",
    )
    assert json.loads(body) == {
        "id": 873547608,
        "type": "REGULAR",
        "deliveryStatus": "SHIPPED",
        "extendedFields": {"ship_first_name": "Ravi"},
        "customFields": {"ordersource": "web"},
        "lineItems": [
            {
                "itemCode": "sku_234_2",
                "extendedFields": {"GrossWeight": "10.50"},
                "outlierStatus": "NORMAL",
            },
            {"itemCode": "sku_234_3", "extendedFields": {"GrossWeight": "4.25"}},
        ],
    }
    assert (
        requests[3]
        == 'PUT /v2/transactions {"number":"BILL-77","type":"NOT_INTERESTED","deliveryStatus":"RETURNED"}'
    )


def put(
    sandbox: SandboxServer, query: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.put(
        f"{sandbox.url}/v2/transactions?{query}",
        json=body,
        headers=AUTH if headers is None else headers,
        timeout=10,
    )


class TestSandbox:
    def test_401(self, sandbox: SandboxServer) -> None:
        assert (
            put(
                sandbox,
                "identifierName=mobile&identifierValue=919986000586",
                {"id": 873547608},
                headers={},
            ).status_code
            == 401
        )

    @pytest.mark.parametrize(
        ("query", "body", "code"),
        [
            (
                "identifierName=mobile&identifierValue=000",
                {"id": 873547608, "deliveryStatus": "SHIPPED"},
                667,
            ),
            ("identifierName=mobile&identifierValue=1", {"number": "BILL-DUP"}, 668),
            (
                "identifierName=mobile&identifierValue=919986000586",
                {"id": 873547608, "customFields": {"nope": "x"}},
                669,
            ),
        ],
    )
    def test_documented_errors(
        self, sandbox: SandboxServer, query: str, body: dict[str, Any], code: int
    ) -> None:
        response = put(sandbox, query, body)
        assert response.status_code == 400 and response.json()["errors"][0]["code"] == code

    def test_mixed_and_return_outlier_refused(self, sandbox: SandboxServer) -> None:
        assert (
            put(
                sandbox,
                "identifierName=mobile&identifierValue=1",
                {"number": "BILL-MIX", "type": "MIXED"},
            ).status_code
            == 400
        )

    @pytest.mark.parametrize(
        "shape",
        [
            {"customFields": ["a"]},
            {"customFields": "ab"},
            {"extendedFields": []},
            {"lineItems": {}},
            {"lineItems": ["sku_234_2"]},
            {"type": ["REGULAR"]},
        ],
    )
    def test_a_body_of_the_wrong_shape_is_refused_whole(
        self, sandbox: SandboxServer, shape: dict[str, Any]
    ) -> None:
        """Fields and line items that are not objects (or a type that is not a word) get a 400
        and change nothing: never a crash of the emulator, nor a field-by-field error that
        reads a string as its letters."""
        before = sandbox.state.snapshot()
        response = put(
            sandbox,
            "identifierName=mobile&identifierValue=919986000586",
            {"id": 873547608, **shape},
        )
        assert response.status_code == 400, response.text
        assert sandbox.state.snapshot() == before

    def test_update_commits_everything_together(self, sandbox: SandboxServer) -> None:
        before = sandbox.state.snapshot()
        body = {
            "id": 873547608,
            "deliveryStatus": "SHIPPED",
            "lineItems": [{"itemCode": "sku_234_2"}, {"itemCode": "missing"}],
        }
        assert (
            put(sandbox, "identifierName=mobile&identifierValue=919986000586", body).status_code
            == 400
        )
        assert sandbox.state.snapshot() == before


@pytest.mark.usefixtures("keys_in_env")
def test_outcomes_against_the_sandbox(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAP_USER", "acme.api")
    monkeypatch.setenv("CAP_PASSWORD", "sandbox-password-acme")
    job = tmp_path / "job.toml"
    job.write_text(
        f'operation = "capillary-transaction"\nbase_url = "{sandbox.url}"\nrate_per_second = 50\n'
        f'state_dir = "{tmp_path / "state"}"\n[options]\nskip_downstream = true\n'
        '[communities.acme]\nusername_env = "CAP_USER"\npassword_env = "CAP_PASSWORD"\n'
    )
    source = tmp_path / "in.csv"
    source.write_text(
        "community,identifierName,identifierValue,id,number,deliveryStatus,lineItems.itemCode,lineItems.extendedFields.GrossWeight,customFields.loyalty_tier\n"
        "acme,mobile,919986000586,873547608,,SHIPPED,sku_234_2,10.5,\n"
        "acme,mobile,919986000586,873547608,,SHIPPED,sku_234_3,4.2,\n"
        "acme,mobile,1,,BILL-DUP,DELIVERED,,,\n"
        "acme,email,ann@example.com,873547700,,,,,nope\n"
        "acme,email,ann@example.com,873547999,,DELIVERED,,,\n"
    )
    out = tmp_path / "out.csv"
    assert run("run", source, "--job", job, "--out", out) == 1
    results = read_results(out)
    assert results.get_column("status").to_list() == [
        "applied",
        "applied",
        "rejected",
        "rejected",
        "rejected",
    ]
    errors = results.get_column("error").to_list()
    assert "use the transaction id instead of the number" in errors[2]
    assert "custom field" in errors[3] and "(669)" in errors[3]
    assert "not found for this customer (667)" in errors[4]
    # The two line-item rows were one request.
    first = [r for r in sandbox.state.requests if '"id":873547608' in r.get("body", "")]
    assert len(first) == 1 and first[0]["headers"]["skip-downstream"] == "true"
    # What every request carried besides the credentials is on record for auditors.
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert manifest["extra_headers"] == {"SKIP-DOWNSTREAM": "true"}
    assert "header SKIP-DOWNSTREAM: true" in (tmp_path / "out.report.html").read_text()
    [updated] = [
        t for t in sandbox.state.snapshot()["capillaryTransactions"] if t["id"] == 873547608
    ]
    assert updated["deliveryStatus"] == "SHIPPED"
    assert [i.get("extendedFields") for i in updated["lineItems"]] == [
        {"GrossWeight": "10.5"},
        {"GrossWeight": "4.2"},
    ]
