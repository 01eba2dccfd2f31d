"""Voucherify order updates and redemption rollbacks: rules, sandbox over HTTP, outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.operations import get_operation
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.state import FaultRule
from tests.helpers import APPS, read_results, run, run_sample, validation_errors, write_job

ORDER = get_operation("voucherify-order")
ROLLBACK = get_operation("voucherify-rollback")
ACME = {"X-App-Id": APPS["acme"][0], "X-App-Token": APPS["acme"][1]}


def order(**cells: str | None) -> dict[str, str | None]:
    return {"community": "acme", "orderId": "ord_acme0001", **cells}


class TestOrderRules:
    @pytest.mark.parametrize(
        "cells",
        [
            {"status": "PAID"},
            {"status": "canceled"},
            {"amount": "1", "discount_amount": "0"},
            {"amount": "2100", "discount_amount": "100"},
            {"amount": "999999999999999"},
            {"source_id": " src-1 "},
            {"referrer_id": "cust_1"},
        ],
    )
    def test_valid(self, cells: dict[str, str]) -> None:
        assert validation_errors(ORDER, order(**cells)) == [None]

    def test_metadata_alone_is_a_change(self) -> None:
        assert validation_errors(
            ORDER, order(**{"metadata.location": "L2"}), families=("metadata.location",)
        ) == [None]

    @pytest.mark.parametrize(
        ("cells", "words"),
        [
            ({"status": "SHIPPED"}, "is not an order status"),
            ({"amount": "21.00"}, "write 2100 for 21.00"),
            ({"amount": "21,5"}, "has decimals"),
            ({"amount": "-5"}, "amounts are at least 1"),
            ({"amount": "0"}, "amounts are at least 1 (the API takes a positive amount)"),
            ({"amount": "-0"}, "amounts are at least 1"),
            ({"discount_amount": "-1"}, "amounts are at least 0"),
            ({"discount_amount": "12a"}, "is not a whole number"),
            ({"amount": "1000000000000000"}, "too large"),
            ({"amount": "  "}, "is blank"),
            ({"source_id": " "}, "is blank"),
            ({}, "nothing to change"),
            ({"orderId": None, "status": "PAID"}, "orderId: is empty"),
            ({"community": "initech", "status": "PAID"}, "not a community"),
        ],
    )
    def test_invalid(self, cells: dict[str, str | None], words: str) -> None:
        [error] = validation_errors(ORDER, order(**cells))
        assert error is not None and words in error

    def test_one_order_on_two_rows(self) -> None:
        errors = validation_errors(ORDER, order(status="PAID"), order(amount="1"))
        assert all(e is not None and "rows 2, 3" in e for e in errors)


class TestRollbackRules:
    def test_valid_and_invalid(self) -> None:
        rows = [
            {"community": "acme", "redemptionId": "r_1"},
            {
                "community": "acme",
                "redemptionId": "r_2",
                "reason": "Returned",
                "tracking_id": "36_bob",
            },
            {"community": "acme", "redemptionId": None},
            {"community": "acme", "redemptionId": "r_3", "reason": "  "},
        ]
        errors = validation_errors(ROLLBACK, *rows)
        assert errors[:2] == [None, None]
        assert "redemptionId: is empty" in (errors[2] or "")
        assert "reason: is blank" in (errors[3] or "")


class TestRequests:
    def test_sample_dry_run(self, tmp_path: Path) -> None:
        out = tmp_path / "r.csv"
        assert (
            run_sample(
                tmp_path, "voucherify-order.csv", "voucherify-order.example.toml", out, "--dry-run"
            )
            == 0
        )
        requests = read_results(out).get_column("request").to_list()
        method, path, body = requests[0].split(" ", 2)
        assert (method, path) == ("PUT", "/v1/orders/ord_acme0001")
        assert json.loads(body) == {
            "status": "PAID",
            "amount": 2100,
            "metadata": {"location_id": "L2", "channel": "web", "floor": 2, "tags": ["L2", "L3"]},
        }
        assert json.loads(requests[1].split(" ", 2)[2]) == {"status": "FULFILLED"}
        # The two rows of ord_acme0004 are one request with both items.
        assert requests[4] == requests[5]
        assert [i["source_id"] for i in json.loads(requests[4].split(" ", 2)[2])["items"]] == [
            "roses_1",
            "vase_1",
        ]

    def test_rollback_query_is_encoded(self, tmp_path: Path) -> None:
        out = tmp_path / "r.csv"
        assert (
            run_sample(
                tmp_path,
                "voucherify-rollback.csv",
                "voucherify-rollback.example.toml",
                out,
                "--dry-run",
            )
            == 0
        )
        requests = read_results(out).get_column("request").to_list()
        assert (
            requests[0]
            == "POST /v1/redemptions/r_acme0001/rollback?reason=Customer%20returned%20the%20order "
            '{"customer":{"source_id":"36_bob"},"order":{"source_id":"test_rollback_8"},'
            '"metadata":{"ticket":"T-1001","location_id":["L2"]}}'
        )
        assert requests[1] == "POST /v1/redemptions/r_acme0002/rollback {}"
        assert "?reason=Duplicate%20redemption&tracking_id=36_bob " in requests[2]

    def test_mistakes_sample(self, tmp_path: Path) -> None:
        out = tmp_path / "r.csv"
        assert (
            run_sample(
                tmp_path,
                "voucherify-order-mistakes.csv",
                "voucherify-order.example.toml",
                out,
                "--dry-run",
            )
            == 1
        )
        assert set(read_results(out).get_column("status")) == {"invalid"}


def voucherify_order(sandbox: SandboxServer, order_id: str) -> dict[str, Any]:
    [found] = [o for o in sandbox.state.snapshot()["voucherifyOrders"] if o["id"] == order_id]
    return found


def redemption(sandbox: SandboxServer, redemption_id: str) -> dict[str, Any]:
    [found] = [
        r for r in sandbox.state.snapshot()["voucherifyRedemptions"] if r["id"] == redemption_id
    ]
    return found


class TestSandbox:
    def put(
        self, sandbox: SandboxServer, target: str, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.put(
            f"{sandbox.url}/v1/orders/{target}",
            json=body,
            headers=ACME if headers is None else headers,
            timeout=10,
        )

    def test_update_by_id_and_by_source_id(self, sandbox: SandboxServer) -> None:
        response = self.put(sandbox, "ord_acme0001", {"status": "PAID", "metadata": {"a": "1"}})
        assert response.status_code == 200 and response.json()["status"] == "PAID"
        assert self.put(sandbox, "acme-order-2", {"amount": 5}).status_code == 200
        assert voucherify_order(sandbox, "ord_acme0002")["amount"] == 5

    def test_401_wrong_token(self, sandbox: SandboxServer) -> None:
        response = self.put(
            sandbox,
            "ord_acme0001",
            {"status": "PAID"},
            headers={"X-App-Id": APPS["acme"][0], "X-App-Token": "nope"},
        )
        assert response.status_code == 401 and response.json()["key"] == "unauthorized"

    def test_404_other_project(self, sandbox: SandboxServer) -> None:
        response = self.put(sandbox, "ord_globex0001", {"status": "PAID"})
        assert response.status_code == 404 and response.json()["key"] == "not_found"

    @pytest.mark.parametrize(
        "body", [{"status": "SHIPPED"}, {"amount": 21.5}, {"amount": -1}, {"color": "red"}]
    )
    def test_400(self, sandbox: SandboxServer, body: dict[str, Any]) -> None:
        response = self.put(sandbox, "ord_acme0001", body)
        assert response.status_code == 400 and response.json()["key"] == "invalid_payload"

    def test_rollback_counts_and_refuses_a_second(self, sandbox: SandboxServer) -> None:
        url = f"{sandbox.url}/v1/redemptions/r_acme0001/rollback?reason=x"
        first = httpx.post(url, json={}, headers=ACME)
        assert first.status_code == 200 and first.json()["result"] == "SUCCESS"
        assert first.json()["reason"] == "x"
        assert httpx.post(url, json={}, headers=ACME).status_code == 400
        assert redemption(sandbox, "r_acme0001")["rollbacks"] == 1

    def test_rollback_404_and_401(self, sandbox: SandboxServer) -> None:
        missing = httpx.post(
            f"{sandbox.url}/v1/redemptions/r_globex0001/rollback", json={}, headers=ACME
        )
        assert missing.status_code == 404 and missing.json()["key"] == "not_found"
        wrong = httpx.post(
            f"{sandbox.url}/v1/redemptions/r_acme0001/rollback",
            json={},
            headers={"X-App-Id": "x", "X-App-Token": "y"},
        )
        assert wrong.status_code == 401

    def test_rollback_failure_result_is_200(self, sandbox: SandboxServer) -> None:
        response = httpx.post(
            f"{sandbox.url}/v1/redemptions/r_acme_locked/rollback", json={}, headers=ACME
        )
        assert response.status_code == 200 and response.json()["result"] == "FAILURE"
        assert response.json()["failure_code"] == "customer_rules_violated"


def csv(tmp_path: Path, header: str, *lines: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.usefixtures("keys_in_env")
class TestOutcomes:
    def job(self, tmp_path: Path, sandbox: SandboxServer, operation: str) -> Path:
        return write_job(
            tmp_path / "job.toml", sandbox.url, operation=operation, backoff_base_seconds=0.01
        )

    def test_orders_applied_rejected_and_retried(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        sandbox.state.faults.rules = [
            FaultRule(kind="error_after", status=502, match="ord_acme0003", times=1)
        ]
        source = csv(
            tmp_path,
            "community,orderId,status,amount,metadata.location_id",
            "acme,ord_acme0001,paid,2100,L2",
            "acme,ord_missing,PAID,,",
            "acme,ord_acme0003,FULFILLED,,",
            "globex,globex-order-1,CANCELED,1,",
        )
        out = tmp_path / "out.csv"
        assert (
            run(
                "run",
                source,
                "--job",
                self.job(tmp_path, sandbox, "voucherify-order"),
                "--out",
                out,
            )
            == 1
        )
        results = read_results(out)
        assert results.get_column(
            "reconcile_status" if "reconcile_status" in results.columns else "status"
        ).to_list() == [
            "applied",
            "rejected",
            "applied",
            "applied",
        ]
        assert "Cannot find order with id ord_missing" in results.row(1, named=True)["error"]
        assert results.row(2, named=True)["attempts"] == "2"
        assert voucherify_order(sandbox, "ord_acme0001")["metadata"] == {"location_id": "L2"}
        assert voucherify_order(sandbox, "ord_globex0001")["status"] == "CANCELED"

    def test_rollback_outcomes(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        sandbox.state.faults.rules = [
            FaultRule(kind="error_after", status=502, match="r_acme0002", times=1)
        ]
        source = csv(
            tmp_path,
            "community,redemptionId,reason",
            "acme,r_acme0001,Returned",
            "acme,r_acme0002,Returned",
            "acme,r_acme_locked,Returned",
        )
        out = tmp_path / "out.csv"
        job = self.job(tmp_path, sandbox, "voucherify-rollback")
        assert run("run", source, "--job", job, "--out", out) == 1
        results = read_results(out)
        assert results.get_column("status").to_list() == ["applied", "unknown", "rejected"]
        assert results.row(1, named=True)["error"].startswith(
            "outcome unknown: check the order before re-running"
        )
        assert results.row(2, named=True)["error"] == (
            "rollback FAILURE (customer_rules_violated): Customer does not match the validation rules of the rollback"
        )
        assert redemption(sandbox, "r_acme0002")["rollbacks"] == 1  # applied once, never re-sent
        sent = [r["path"] for r in sandbox.state.requests]
        assert sent.count("/v1/redemptions/r_acme0002/rollback") == 1

        # A second run leaves the uncertain rollback alone until --force.
        assert run("run", source, "--job", job, "--out", out) == 1
        again = read_results(out)
        assert again.get_column("status").to_list() == ["already_applied", "unknown", "rejected"]
        assert redemption(sandbox, "r_acme0002")["rollbacks"] == 1
