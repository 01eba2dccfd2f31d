"""The sandbox behaves like the documented API, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.sandbox import SandboxServer
from reconcile.sandbox.state import DEFAULT_SEED, FaultRule, Faults, load_seed

ACME = {"Authorization": "Bearer sandbox-key-acme"}
GLOBEX = {"Authorization": "Bearer sandbox-key-globex"}
ORDER = "ORD202641612055614747"
PAIR = {"voucherCode": "NEW-CODE-1", "voucherExpiryDate": "31/12/2026"}


def patch(
    sandbox: SandboxServer, target: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.patch(
        f"{sandbox.url}/v1/purchase-histories/{target}",
        json=body,
        headers=ACME if headers is None else headers,
        timeout=10,
    )


def record(sandbox: SandboxServer, purchase_id: str) -> dict[str, Any]:
    [found] = [
        r for r in sandbox.state.snapshot()["purchaseHistories"] if r["purchaseID"] == purchase_id
    ]
    return found


def voucher(sandbox: SandboxServer, voucher_id: str) -> dict[str, Any]:
    [found] = [v for v in sandbox.state.snapshot()["vouchers"] if v["_id"] == voucher_id]
    return found


class TestSuccess:
    def test_200_body_as_documented(self, sandbox: SandboxServer) -> None:
        body = {"redemptionInstructions": "At the counter", **PAIR}
        response = patch(sandbox, ORDER, body)
        assert response.status_code == 200
        payload = response.json()
        assert payload["meta"] == {"status": "success", "statusCode": 200}
        assert payload["message"] == "Update purchase history success."
        data = payload["data"]
        assert data["purchaseID"] == ORDER
        assert data["voucherCode"] == "NEW-CODE-1"
        assert data["voucherExpiryDate"] == "2026-12-31T00:00:00.000Z"
        assert data["product"]["redemptionInstructions"] == "At the counter"
        assert data["voucher"]["code"] == "NEW-CODE-1"
        # The source voucher changed too, and the product record did not.
        assert voucher(sandbox, data["voucherID"])["code"] == "NEW-CODE-1"
        assert all(
            p["redemptionInstructions"] != "At the counter"
            for p in sandbox.state.snapshot()["products"]
        )

    def test_by_mongo_id(self, sandbox: SandboxServer) -> None:
        assert (
            patch(sandbox, "507f1f77bcf86cd799439011", {"redemptionInstructions": "x"}).status_code
            == 200
        )


class TestAuth:
    def test_missing_key_401(self, sandbox: SandboxServer) -> None:
        assert patch(sandbox, ORDER, PAIR, headers={}).status_code == 401

    def test_unknown_key_401(self, sandbox: SandboxServer) -> None:
        assert (
            patch(sandbox, ORDER, PAIR, headers={"Authorization": "Bearer nope"}).status_code == 401
        )

    def test_key_without_permission_403(self, sandbox: SandboxServer) -> None:
        response = patch(
            sandbox, ORDER, PAIR, headers={"Authorization": "Bearer sandbox-key-acme-readonly"}
        )
        assert response.status_code == 403
        assert "purchase-history" in response.json()["message"]


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ({}, "At least one"),
            ({"voucherCode": "A"}, "together"),
            ({"voucherExpiryDate": "31/12/2026"}, "together"),
            ({"redemptionInstructions": "  "}, "non-empty"),
            ({"redemptionInstructions": "a" * 10001}, "10000"),
            ({"voucherCode": " ", "voucherExpiryDate": "31/12/2026"}, "non-empty"),
            ({"voucherCode": "c" * 513, "voucherExpiryDate": "31/12/2026"}, "512"),
            ({"voucherCode": "A", "voucherExpiryDate": "2026-12-31"}, "DD/MM/YYYY"),
            ({"voucherCode": "A", "voucherExpiryDate": "31/02/2026"}, "calendar"),
            ({"voucherCode": "A", "voucherExpiryDate": "29/02/2027"}, "calendar"),
            ({"communityID": "x", "redemptionInstructions": "a"}, "Unknown field"),
            ("not an object", "JSON object"),
        ],
    )
    def test_400_per_rule_with_envelope(
        self, sandbox: SandboxServer, body: Any, words: str
    ) -> None:
        response = patch(sandbox, ORDER, body)
        assert response.status_code == 400
        assert response.json()["meta"] == {"status": "error", "statusCode": 400}
        assert words in response.json()["message"]

    def test_boundaries_accepted(self, sandbox: SandboxServer) -> None:
        body = {
            "redemptionInstructions": "a" * 10000,
            "voucherCode": "c" * 512,
            "voucherExpiryDate": "29/02/2028",
        }
        assert patch(sandbox, ORDER, body).status_code == 200


class TestNotFoundAndConflict:
    def test_404_unknown_record(self, sandbox: SandboxServer) -> None:
        assert patch(sandbox, "ORD999", PAIR).status_code == 404

    def test_404_other_communitys_record_is_invisible(self, sandbox: SandboxServer) -> None:
        before = record(sandbox, ORDER)
        assert patch(sandbox, ORDER, PAIR, headers=GLOBEX).status_code == 404
        assert record(sandbox, ORDER) == before

    def test_409_code_of_another_voucher_and_nothing_changes(self, sandbox: SandboxServer) -> None:
        before = sandbox.state.snapshot()
        response = patch(
            sandbox,
            ORDER,
            {
                "redemptionInstructions": "new",
                "voucherCode": "TAKEN-CODE",
                "voucherExpiryDate": "31/12/2026",
            },
        )
        assert response.status_code == 409
        assert sandbox.state.snapshot() == before

    def test_same_code_again_is_not_a_conflict(self, sandbox: SandboxServer) -> None:
        assert patch(sandbox, ORDER, PAIR).status_code == 200
        assert patch(sandbox, ORDER, PAIR).status_code == 200


class TestTransaction:
    def test_failure_between_writes_commits_neither(self, sandbox: SandboxServer) -> None:
        """Voucher and purchase-history snapshot change together or not at all."""
        sandbox.state.faults.rules = [FaultRule(kind="error_mid_write", times=1)]
        before = sandbox.state.snapshot()
        assert patch(sandbox, ORDER, PAIR).status_code == 500
        assert sandbox.state.snapshot() == before
        # The next attempt commits both.
        assert patch(sandbox, ORDER, PAIR).status_code == 200
        after = record(sandbox, ORDER)
        assert after["voucherCode"] == voucher(sandbox, after["voucherID"])["code"] == "NEW-CODE-1"


class TestRateLimit:
    def test_429_with_retry_after(self, sandbox: SandboxServer) -> None:
        sandbox.state.faults.rate_per_second = 0.5
        sandbox.state.faults.burst = 1
        assert patch(sandbox, ORDER, PAIR).status_code == 200
        response = patch(sandbox, ORDER, PAIR)
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        # Another key has its own bucket.
        assert (
            patch(
                sandbox, "ORD300000000000000001", {"redemptionInstructions": "x"}, headers=GLOBEX
            ).status_code
            == 200
        )


class TestFaults:
    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_error_before_write(self, sandbox: SandboxServer, status: int) -> None:
        sandbox.state.faults.rules = [FaultRule(kind="error_before", status=status, times=1)]
        before = record(sandbox, ORDER)
        assert patch(sandbox, ORDER, PAIR).status_code == status
        assert record(sandbox, ORDER) == before

    def test_error_after_write_is_committed(self, sandbox: SandboxServer) -> None:
        """The ambiguous case: 502, yet the write is there."""
        sandbox.state.faults.rules = [FaultRule(kind="error_after", status=502, times=1)]
        assert patch(sandbox, ORDER, PAIR).status_code == 502
        assert record(sandbox, ORDER)["voucherCode"] == "NEW-CODE-1"
        [logged] = sandbox.state.requests
        assert logged["committed"] is True and logged["status"] == 502

    def test_dropped_connection(self, sandbox: SandboxServer) -> None:
        sandbox.state.faults.rules = [FaultRule(kind="drop", times=1)]
        before = record(sandbox, ORDER)
        with pytest.raises(httpx.HTTPError):
            patch(sandbox, ORDER, PAIR)
        assert record(sandbox, ORDER) == before

    def test_latency(self, sandbox: SandboxServer) -> None:
        sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.3)]
        response = patch(sandbox, ORDER, PAIR)
        assert response.status_code == 200
        assert response.elapsed.total_seconds() >= 0.3

    def test_share_is_reproducible_with_a_seed(self, seed: dict[str, Any]) -> None:
        from reconcile.sandbox import SandboxState

        def statuses() -> list[int]:
            faults = Faults(rules=[FaultRule(kind="error_before", status=503, share=0.5)], seed=7)
            with SandboxServer(SandboxState(seed, faults)) as server:
                return [patch(server, ORDER, PAIR).status_code for _ in range(20)]

        first = statuses()
        assert first == statuses()
        assert 503 in first and 200 in first

    def test_faults_from_json(self) -> None:
        faults = Faults.from_dict(
            {"rules": [{"kind": "drop", "share": 0.1}], "rate_per_second": 5, "burst": 2}
        )
        assert faults.rules[0].kind == "drop" and faults.rate_per_second == 5
        with pytest.raises(ValueError, match="unknown fault kind"):
            Faults.from_dict({"rules": [{"kind": "explode"}]})


class TestDumps:
    def test_state_and_request_log_endpoints(self, sandbox: SandboxServer) -> None:
        patch(sandbox, ORDER, PAIR)
        state = httpx.get(f"{sandbox.url}/_sandbox/state").json()
        assert any(r["voucherCode"] == "NEW-CODE-1" for r in state["purchaseHistories"])
        [logged] = httpx.get(f"{sandbox.url}/_sandbox/requests").json()
        assert logged["community"] == "acme" and logged["status"] == 200
        assert "sandbox-key-acme" not in str(logged)

    def test_request_log_file(self, sandbox: SandboxServer, tmp_path: Any) -> None:
        sandbox.state.log_path = tmp_path / "requests.jsonl"
        patch(sandbox, ORDER, PAIR)
        patch(sandbox, ORDER, PAIR, headers={})
        lines = sandbox.state.log_path.read_text().splitlines()
        assert [__import__("json").loads(x)["status"] for x in lines] == [200, 401]


def test_reconcile_sandbox_serves_in_the_foreground(tmp_path: Any) -> None:
    """`reconcile sandbox --seed --port --faults --request-log` serves until terminated."""
    import json
    import socket
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"rules": [{"kind": "error_before", "status": 503, "times": 1}]}))
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconcile.cli",
            "sandbox",
            "--seed",
            str(DEFAULT_SEED),
            "--port",
            str(port),
            "--faults",
            str(faults),
            "--request-log",
            str(log),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/purchase-histories/{ORDER}"
        deadline = time.monotonic() + 20
        while True:
            try:
                first = httpx.patch(url, json=PAIR, headers=ACME, timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        second = httpx.patch(url, json=PAIR, headers=ACME, timeout=5)
        assert (first.status_code, second.status_code) == (503, 200)
        assert [json.loads(line)["status"] for line in log.read_text().splitlines()] == [503, 200]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_default_seed_ships_inside_the_package() -> None:
    """An installed reconcile (no checkout around it) must still find its sandbox seed."""
    import reconcile

    package = Path(reconcile.__file__).resolve().parent
    assert DEFAULT_SEED.is_relative_to(package)
    assert load_seed(DEFAULT_SEED)["communities"]
