"""Sent once, whatever the network does: every fault of a toxiproxy-like proxy between the tool and
the sandbox ends each row as the README says, and nothing below the tool re-sends a request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest

from reconcile.client import SendFailure, make_client, send
from reconcile.sandbox import Faults, SandboxServer, SandboxState
from tests.faultproxy import FAULTS, FaultProxy
from tests.helpers import KEYS, read_results, run, write_job

ACME_ID = "64a000000000000000000001"
REFUNDED = "695e00030000000000000000"
INSTRUCTIONS = "Collect at the desk, gate 4"
TIMEOUT = 1.0
"""The job's timeout_seconds: a stall or a drip is cut after it."""


def refund_transaction(fault: str) -> str:
    return f"ORDFAULT{fault.upper()}"


def order(number: int) -> str:
    return f"ORDTACME{number:05d}"


@pytest.fixture
def faulty_sandbox(seed: dict[str, Any]) -> Iterator[SandboxServer]:
    """The sandbox with one refundable transaction per fault, plus a clean one."""
    for name in [*FAULTS, "clean"]:
        seed["redemptionTransactions"].append(
            {
                "transactionId": refund_transaction(name),
                "communityID": ACME_ID,
                "statusId": "695e00000000000000000000",
                "coins": 100,
                "refunded": False,
            }
        )
    with SandboxServer(SandboxState(seed, Faults())) as server:
        yield server


def sandbox_requests_naming(sandbox: SandboxServer, target: str) -> int:
    """Requests the sandbox received whose path or body names ``target``."""
    return sum(
        target in entry["path"] or target in entry.get("body", "")
        for entry in sandbox.state.requests
    )


def job(tmp_path: Path, proxy: FaultProxy, operation: str) -> Path:
    """Through the proxy, one request at a time per community, so connections are reused."""
    return write_job(
        tmp_path / "job.toml",
        proxy.url,
        operation=operation,
        concurrency=1,
        timeout_seconds=TIMEOUT,
        backoff_base_seconds=0.01,
        max_attempts=3,
    )


@pytest.mark.usefixtures("keys_in_env")
class TestEveryFault:
    def test_repeatable_rows_end_applied_and_attempts_are_what_the_proxy_saw(
        self, faulty_sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """Purchase-history sets values: each faulted row is retried and ends applied with the
        new instructions in place, and its attempts count every request the proxy read."""
        faults = {order(n + 1): fault for n, fault in enumerate(FAULTS)}
        rows = [order(0), *faults]  # a clean row first: the faulted ones reuse its connection
        source = tmp_path / "in.csv"
        lines = ["community,purchaseHistoryID,redemptionInstructions"]
        lines += [f'acme,{target},"{INSTRUCTIONS}"' for target in rows]
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = tmp_path / "out.csv"
        with FaultProxy(faulty_sandbox.port, faults, watch=(order(0),)) as proxy:
            code = run(
                "run", source, "--job", job(tmp_path, proxy, "purchase-history"), "--out", out
            )
            seen = dict(proxy.seen)
        results = read_results(out)
        assert code == 0
        assert results.get_column("status").to_list() == ["applied"] * len(rows)
        attempts = dict(zip(rows, results.get_column("attempts").cast(pl.Int64), strict=True))
        assert attempts == {target: seen[target] for target in rows}
        assert attempts[order(0)] == 1
        assert all(attempts[target] == 2 for target in faults)
        histories = {
            h.get("purchaseID"): h for h in faulty_sandbox.state.snapshot()["purchaseHistories"]
        }
        assert all(histories[t]["product"]["redemptionInstructions"] == INSTRUCTIONS for t in rows)

    def test_refunds_that_may_have_reached_the_api_are_unknown_and_sent_at_most_once(
        self, faulty_sandbox: SandboxServer, tmp_path: Path
    ) -> None:
        """A coin refund is never re-sent after an uncertain outcome, by the tool or the HTTP
        stack: faulted rows end unknown after one request, the sandbox saw it at most once
        (never, when the proxy reset before forwarding), and no row says applied that the
        sandbox did not apply."""
        faults = {refund_transaction(fault): fault for fault in FAULTS}
        clean = refund_transaction("clean")
        rows = [clean, *faults]
        source = tmp_path / "in.csv"
        lines = ["community,transactionId,statusId,refundCoins"]
        lines += [f"acme,{target},{REFUNDED},yes" for target in rows]
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = tmp_path / "out.csv"
        with FaultProxy(faulty_sandbox.port, faults, watch=(clean,)) as proxy:
            code = run(
                "run", source, "--job", job(tmp_path, proxy, "redemption-status"), "--out", out
            )
            seen = dict(proxy.seen)
        assert code == 1
        results = read_results(out)
        outcome = {
            r["transactionId"]: (r["status"], int(r["attempts"]))
            for r in results.iter_rows(named=True)
        }
        assert outcome == {clean: ("applied", 1)} | {t: ("unknown", 1) for t in faults}
        assert all(seen[t] == 1 for t in rows)
        refunds = {
            t["transactionId"]: t.get("refunds", 0)
            for t in faulty_sandbox.state.snapshot()["redemptionTransactions"]
        }
        for target, fault in faults.items():
            expected = 0 if fault == "reset_before" else 1
            assert sandbox_requests_naming(faulty_sandbox, target) == expected, fault
            assert refunds[target] == expected, fault
        assert refunds[clean] == 1
        errors = dict(zip(results["transactionId"], results["error"], strict=True))
        assert "no answer in time" in errors[refund_transaction("drip")]
        assert "no answer in time" in errors[refund_transaction("stall")]
        assert "outcome unknown" in errors[refund_transaction("garbage")]


class TestTheHttpStackNeverResends:
    """Pins the HTTP libraries' own retries off: an upgrade that turns them back on fails here."""

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "POST", "DELETE"])
    def test_a_reset_on_a_reused_connection_is_not_sent_again(
        self, faulty_sandbox: SandboxServer, method: str
    ) -> None:
        """aiohttp re-sends an idempotent request once on a fresh connection after a reset of a
        kept-alive one; the tool's client must not: the proxy sees the request once, and the
        caller learns it may have been applied."""
        target = "ORDTACME00007"
        with FaultProxy(faulty_sandbox.port, {target: "reset_before"}) as proxy:

            async def exchange() -> SendFailure | None:
                headers = {"Authorization": f"Bearer {KEYS['acme']}"}
                async with make_client(timeout_seconds=5, max_connections=1) as client:
                    first = await send(
                        client, "GET", f"{proxy.url}/_sandbox/state", headers=headers, body=None
                    )
                    assert first.status == 200  # the connection is now pooled, kept alive
                    try:
                        await send(
                            client,
                            method,
                            f"{proxy.url}/v1/purchase-histories/{target}",
                            headers=headers,
                            body='{"redemptionInstructions": "x"}',
                        )
                    except SendFailure as failure:
                        return failure
                    return None

            failure = anyio.run(exchange)
            assert proxy.seen[target] == 1
        assert failure is not None and failure.maybe_applied

    @staticmethod
    def patch_through(proxy: FaultProxy, target: str, timeout: float) -> SendFailure | None:
        """One PATCH of ``target`` through the proxy with the tool's client."""

        async def exchange() -> SendFailure | None:
            async with make_client(timeout_seconds=timeout, max_connections=1) as client:
                try:
                    await send(
                        client,
                        "PATCH",
                        f"{proxy.url}/v1/purchase-histories/{target}",
                        headers={"Authorization": f"Bearer {KEYS['acme']}"},
                        body='{"redemptionInstructions": "x"}',
                    )
                except SendFailure as failure:
                    return failure
            return None

        return anyio.run(exchange)

    def test_a_non_http_answer_is_a_send_failure(self, faulty_sandbox: SandboxServer) -> None:
        """Bytes that are not HTTP become a failure that may have applied, not a crash."""
        target = "ORDTACME00008"
        with FaultProxy(faulty_sandbox.port, {target: "garbage"}) as proxy:
            failure = self.patch_through(proxy, target, timeout=5)
        assert failure is not None and failure.maybe_applied

    def test_the_timeout_bounds_the_whole_request(self, faulty_sandbox: SandboxServer) -> None:
        """An answer dripping a byte every 0.2 s never stops reads from arriving, yet the
        request ends at timeout_seconds: "no answer in time"."""
        target = "ORDTACME00009"
        with FaultProxy(faulty_sandbox.port, {target: "drip"}, drip_seconds=0.2) as proxy:
            failure = self.patch_through(proxy, target, timeout=0.5)
        assert failure is not None and failure.maybe_applied
        assert "no answer in time" in str(failure)
