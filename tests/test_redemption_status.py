"""Redemption order status updates: every rule and outcome, the refund never sent twice blindly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.operations import get_operation
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.state import FaultRule
from tests.helpers import read_results, run, run_sample, validation_errors, write_job

OP = get_operation("redemption-status")
SHIPPING, REFUNDED = "695e00010000000000000000", "695e00030000000000000000"
GLOBEX_SHIPPING = "695e01010000000000000000"
ACME = {"Authorization": "Bearer sandbox-key-acme"}


def row(**cells: str | None) -> dict[str, str | None]:
    return {"community": "acme", "transactionId": "ORD202507013831", "statusId": SHIPPING, **cells}


class TestValidation:
    @pytest.mark.parametrize(
        "flag", [None, "", "true", "TRUE", "Yes", "no", "FALSE", "1", "0", " yes "]
    )
    def test_refund_words_accepted(self, flag: str | None) -> None:
        assert validation_errors(OP, row(refundCoins=flag)) == [None]

    @pytest.mark.parametrize(
        ("cells", "words"),
        [
            ({"refundCoins": "maybe"}, "is not yes or no"),
            ({"refundCoins": "2"}, "is not yes or no"),
            ({"statusId": "695e0001000000000000000"}, "is not a status ID"),
            ({"statusId": "Shipping"}, "is not a status ID"),
            ({"statusId": None}, "statusId: is empty"),
            ({"transactionId": None}, "transactionId: is empty"),
            ({"transactionId": "   "}, "transactionId: is blank"),
            ({"transactionId": "2.02507E+14"}, "turned into a number by Excel"),
            ({"community": "initech"}, "not a community of the job file"),
        ],
    )
    def test_invalid(self, cells: dict[str, str | None], words: str) -> None:
        [error] = validation_errors(OP, row(**cells))
        assert error is not None and words in error

    def test_a_transaction_on_several_rows_is_invalid_everywhere(self) -> None:
        errors = validation_errors(
            OP, row(), row(statusId=REFUNDED), row(transactionId="ORD202507013832")
        )
        assert errors[2] is None
        assert all(e is not None and "rows 2, 3" in e for e in errors[:2])

    def test_request_body(self, tmp_path: Path) -> None:
        """statusId as the integration notes say (not the curl example's statusID); refundCoins
        always a boolean."""
        out = tmp_path / "r.csv"
        assert (
            run_sample(
                tmp_path,
                "redemption-status.csv",
                "redemption-status.example.toml",
                out,
                "--dry-run",
            )
            == 0
        )
        requests = read_results(out).get_column("request").to_list()
        method, path, body = requests[2].split(" ", 2)
        assert (method, path) == ("PUT", "/v1/redemption-transactions/status")
        assert json.loads(body) == {
            "transactionId": "ORD202507013833",
            "statusId": REFUNDED,
            "refundCoins": True,
        }
        assert [json.loads(r.split(" ", 2)[2])["refundCoins"] for r in requests] == [
            False,
            False,
            True,
            True,
            False,
        ]

    def test_mistakes_sample(self, tmp_path: Path) -> None:
        out = tmp_path / "r.csv"
        assert (
            run_sample(
                tmp_path,
                "redemption-status-mistakes.csv",
                "redemption-status.example.toml",
                out,
                "--dry-run",
            )
            == 1
        )
        assert set(read_results(out).get_column("status")) == {"invalid"}


def put(sandbox: SandboxServer, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.put(
        f"{sandbox.url}/v1/redemption-transactions/status",
        json=body,
        headers=ACME if headers is None else headers,
        timeout=10,
    )


def transaction(sandbox: SandboxServer, transaction_id: str) -> dict[str, Any]:
    [found] = [
        t
        for t in sandbox.state.snapshot()["redemptionTransactions"]
        if t["transactionId"] == transaction_id
    ]
    return found


class TestSandbox:
    def test_200_as_documented(self, sandbox: SandboxServer) -> None:
        response = put(
            sandbox,
            {"transactionId": "ORD202507013831", "statusId": SHIPPING, "refundCoins": False},
        )
        assert response.status_code == 200
        payload = response.json()
        assert (
            payload["status"] == "success"
            and payload["message"] == "Transaction status updated successfully"
        )
        assert payload["data"]["status"] == {
            "_id": SHIPPING,
            "name": "Shipping",
            "category": "incomplete",
            "color": "#3EA1FD",
        }
        assert transaction(sandbox, "ORD202507013831")["statusId"] == SHIPPING

    def test_401_and_403(self, sandbox: SandboxServer) -> None:
        body = {"transactionId": "ORD202507013831", "statusId": SHIPPING}
        assert put(sandbox, body, headers={}).status_code == 401
        response = put(sandbox, body, headers={"Authorization": "Bearer sandbox-key-acme-readonly"})
        assert (
            response.status_code == 403
            and "updateRedemptionTransactionStatus" in response.json()["message"]
        )

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ({"transactionId": "ORD202507013831", "statusID": SHIPPING}, "Unknown field"),
            ({"transactionId": "ORD202507013831"}, "statusId is required"),
            ({"transactionId": "ORD202507013831", "statusId": "nope"}, "valid ObjectId"),
            ({"statusId": SHIPPING}, "transactionId is required"),
            (
                {"transactionId": "ORD202507013831", "statusId": SHIPPING, "refundCoins": "yes"},
                "boolean",
            ),
            (
                {"transactionId": "ORD202507013831", "statusId": SHIPPING, "refundCoins": True},
                "refunded status",
            ),
        ],
    )
    def test_400(self, sandbox: SandboxServer, body: dict[str, Any], words: str) -> None:
        response = put(sandbox, body)
        assert response.status_code == 400 and words in response.json()["message"]

    def test_404_other_community_and_unknown_status(self, sandbox: SandboxServer) -> None:
        assert (
            put(sandbox, {"transactionId": "ORD202601020001", "statusId": SHIPPING}).status_code
            == 404
        )
        assert (
            put(
                sandbox, {"transactionId": "ORD202507013831", "statusId": GLOBEX_SHIPPING}
            ).status_code
            == 404
        )

    def test_409_second_refund_and_refunds_counted(self, sandbox: SandboxServer) -> None:
        body = {"transactionId": "ORD202507013833", "statusId": REFUNDED, "refundCoins": True}
        assert put(sandbox, body).status_code == 200
        assert put(sandbox, body).status_code == 409
        assert transaction(sandbox, "ORD202507013833")["refunds"] == 1

    def test_500(self, sandbox: SandboxServer) -> None:
        sandbox.state.faults.rules = [FaultRule(kind="error_before", status=500, times=1)]
        assert (
            put(sandbox, {"transactionId": "ORD202507013831", "statusId": SHIPPING}).status_code
            == 500
        )


def job_for(tmp_path: Path, sandbox: SandboxServer, **top: Any) -> Path:
    return write_job(
        tmp_path / "job.toml",
        sandbox.url,
        operation="redemption-status",
        backoff_base_seconds=0.01,
        **top,
    )


def csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("community,transactionId,statusId,refundCoins\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.usefixtures("keys_in_env")
class TestOutcomes:
    def test_applies_and_rejects(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        source = csv(
            tmp_path,
            f"acme,ORD202507013831,{SHIPPING},",
            f"acme,ORD202507013833,{REFUNDED},yes",
            f"acme,ORD999,{SHIPPING},",
            f"globex,ORD202601020002,{GLOBEX_SHIPPING},no",
        )
        out = tmp_path / "out.csv"
        assert run("run", source, "--job", job_for(tmp_path, sandbox), "--out", out) == 1
        results = read_results(out)
        assert results.get_column("status").to_list() == [
            "applied",
            "applied",
            "rejected",
            "applied",
        ]
        assert results.row(2, named=True)["error"] == "Redemption transaction not found"
        assert transaction(sandbox, "ORD202507013833")["refunds"] == 1

    def test_refund_not_resent_after_502_after_commit(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """The refund went through but the answer was a 502: never retried blindly."""
        sandbox.state.faults.rules = [FaultRule(kind="error_after", status=502, times=1)]
        source = csv(tmp_path, f"acme,ORD202507013833,{REFUNDED},true")
        out = tmp_path / "out.csv"
        job = job_for(tmp_path, sandbox)
        assert run("run", source, "--job", job, "--out", out) == 1
        result = read_results(out).row(0, named=True)
        assert (result["status"], result["attempts"], result["http_status"]) == (
            "unknown",
            "1",
            "502",
        )
        assert result["error"].startswith("outcome unknown: check the order before re-running")
        assert len(sandbox.state.requests) == 1
        assert transaction(sandbox, "ORD202507013833")["refunds"] == 1

        # The ledger remembers: the next run does not send it either ...
        assert run("run", source, "--job", job, "--out", out) == 1
        result = read_results(out).row(0, named=True)
        assert (result["status"], result["attempts"]) == ("unknown", "0")
        assert "--force re-sends" in result["error"]
        assert len(sandbox.state.requests) == 1
        # ... until an operator who checked the order forces it: the API refuses a second refund.
        assert run("run", source, "--job", job, "--out", out, "--force") == 1
        assert read_results(out).row(0, named=True)["status"] == "rejected"
        assert transaction(sandbox, "ORD202507013833")["refunds"] == 1

    def test_a_refund_overtaken_by_a_later_status_is_not_sent_again_blindly(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """Refunded, then moved to shipping by a later run: the refund row again is not
        'already applied' (the record changed since), and not sent either: unknown."""
        job = job_for(tmp_path, sandbox)
        out = tmp_path / "out.csv"
        refund = f"acme,ORD202507013833,{REFUNDED},yes"
        assert run("run", csv(tmp_path, refund), "--job", job, "--out", out) == 0
        shipping = f"acme,ORD202507013833,{SHIPPING},"
        assert run("run", csv(tmp_path, shipping), "--job", job, "--out", out) == 0
        assert run("run", csv(tmp_path, refund), "--job", job, "--out", out) == 1
        result = read_results(out).row(0, named=True)
        assert (result["status"], result["attempts"]) == ("unknown", "0")
        assert "changed this record at" in result["error"]
        assert "--force" in result["error"]
        assert len(sandbox.state.requests) == 2
        assert transaction(sandbox, "ORD202507013833")["refunds"] == 1

    def test_refund_not_resent_after_timeout(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=1.5, times=1)]
        source = csv(tmp_path, f"acme,ORD202507013833,{REFUNDED},1")
        out = tmp_path / "out.csv"
        assert (
            run(
                "run",
                source,
                "--job",
                job_for(tmp_path, sandbox, timeout_seconds=0.5),
                "--out",
                out,
            )
            == 1
        )
        result = read_results(out).row(0, named=True)
        assert (result["status"], result["attempts"]) == ("unknown", "1")
        assert "no answer in time" in result["error"]

    def test_a_refund_that_could_not_connect_was_not_sent(self, tmp_path: Path) -> None:
        """A refused connection means nothing reached the API: a refund is failed (safe to
        run again), not unknown."""
        import socket

        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        job = write_job(
            tmp_path / "job.toml",
            f"http://127.0.0.1:{port}",
            operation="redemption-status",
            backoff_base_seconds=0.01,
            max_attempts=2,
        )
        out = tmp_path / "out.csv"
        source = csv(tmp_path, f"acme,ORD202507013833,{REFUNDED},yes")
        assert run("run", source, "--job", job, "--out", out) == 1
        result = read_results(out).row(0, named=True)
        assert (result["status"], result["attempts"]) == ("failed", "2")
        assert "could not connect" in result["error"]
        assert "may have applied" not in result["error"]

    @pytest.mark.parametrize("status", [408, 425])
    def test_a_refund_the_server_did_not_act_on_is_retried(
        self, sandbox: SandboxServer, tmp_path: Path, status: int
    ) -> None:
        """408 (request not received in time) and 425 (too early) say nothing was done: the
        refund is sent again, and applied once."""
        sandbox.state.faults.rules = [FaultRule(kind="error_before", status=status, times=1)]
        source = csv(tmp_path, f"acme,ORD202507013833,{REFUNDED},yes")
        out = tmp_path / "out.csv"
        assert run("run", source, "--job", job_for(tmp_path, sandbox), "--out", out) == 0
        result = read_results(out).row(0, named=True)
        assert (result["status"], result["attempts"]) == ("applied", "2")
        assert transaction(sandbox, "ORD202507013833")["refunds"] == 1

    def test_status_without_refund_is_retried(self, sandbox: SandboxServer, tmp_path: Path) -> None:
        sandbox.state.faults.rules = [FaultRule(kind="error_after", status=502, times=1)]
        source = csv(tmp_path, f"acme,ORD202507013831,{SHIPPING},no")
        out = tmp_path / "out.csv"
        assert run("run", source, "--job", job_for(tmp_path, sandbox), "--out", out) == 0
        assert read_results(out).row(0, named=True)["attempts"] == "2"

    def test_refund_retried_after_502_before_sending_is_still_not_blind(
        self, sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """A 5xx cannot tell 'before' from 'after': the refund row stops at unknown either way."""
        sandbox.state.faults.rules = [FaultRule(kind="error_before", status=503, times=1)]
        source = csv(tmp_path, f"acme,ORD202507013833,{REFUNDED},yes")
        out = tmp_path / "out.csv"
        assert run("run", source, "--job", job_for(tmp_path, sandbox), "--out", out) == 1
        assert read_results(out).row(0, named=True)["status"] == "unknown"
        assert transaction(sandbox, "ORD202507013833").get("refunds", 0) == 0

    def test_sample_file_against_the_sandbox(self, tmp_path: Path) -> None:
        out = tmp_path / "out.csv"
        assert (
            run_sample(
                tmp_path,
                "redemption-status.csv",
                "redemption-status.example.toml",
                out,
                "--sandbox",
            )
            == 0
        )
        assert set(read_results(out).get_column("status")) == {"applied"}
