"""A request that never connected is "not sent" and retried, whatever the operation; only one
that may have reached the server is ambiguous (README "Network faults")."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import pytest

from reconcile.client import (
    Answer,
    HttpxTransport,
    SendFailure,
    aiohttp_failure,
    current_progress,
    make_client,
    send,
)
from reconcile.retry import Attempts, Done, NoAnswer, Retry, RetryPolicy, next_step, record
from reconcile.sandbox import Faults, SandboxServer, SandboxState
from tests.faultproxy import BacklogGate
from tests.helpers import read_results, run, write_job
from tests.test_network_faults import ACME_ID, REFUNDED, refund_transaction, sandbox_requests_naming

POLICY = RetryPolicy(max_attempts=3, backoff_base_seconds=0.01)


class _Stalled:
    """A transport that hangs, after marking the request written or not."""

    def __init__(self, *, written: bool) -> None:
        self.written = written

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        current_progress().written = self.written
        await anyio.sleep(30)
        raise AssertionError("not reached")

    async def aclose(self) -> None:
        return None


def _send_through(transport: Any, timeout: float = 0.2) -> SendFailure:
    async def go() -> None:
        async with make_client(
            timeout_seconds=timeout, max_connections=1, transport=transport
        ) as client:
            await send(client, "PATCH", "http://127.0.0.1:9/x", headers={}, body="{}")

    with pytest.raises(SendFailure) as caught:
        anyio.run(go)
    return caught.value


class TestTheDeadlineTellsConnectingFromWaiting:
    def test_a_deadline_before_the_request_was_written_is_not_sent(self) -> None:
        """The whole-request deadline running out while still connecting means nothing left
        the process: could not connect, not maybe applied."""
        failure = _send_through(_Stalled(written=False))
        assert failure.maybe_applied is False
        assert str(failure).startswith("could not connect")

    def test_a_deadline_after_the_request_was_written_is_ambiguous(self) -> None:
        """Once the request was written, the same deadline is "no answer in time", maybe
        applied."""
        failure = _send_through(_Stalled(written=True))
        assert failure.maybe_applied is True
        assert "no answer in time" in str(failure)


class TestErrorTable:
    @pytest.mark.parametrize(
        ("error", "maybe_applied"),
        [
            (aiohttp.ConnectionTimeoutError("connect"), False),
            (
                aiohttp.ClientConnectorError(
                    aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
                    ConnectionRefusedError(111, "refused"),
                ),
                False,
            ),
            (aiohttp.SocketTimeoutError("read"), True),
            (aiohttp.ServerTimeoutError("read"), True),
            (aiohttp.ServerDisconnectedError(), True),
        ],
    )
    def test_each_aiohttp_error_means_what_it_says(
        self, error: Exception, maybe_applied: bool
    ) -> None:
        """Connect errors and connect timeouts are not sent; read timeouts and disconnects
        once connected may have reached the API."""
        assert aiohttp_failure(error).maybe_applied is maybe_applied

    @pytest.mark.parametrize(
        ("error", "maybe_applied"),
        [(httpx.ConnectTimeout("c"), False), (httpx.ConnectError("c"), False),
         (httpx.ReadTimeout("r"), True)],
    )  # fmt: skip
    def test_the_httpx_seam_means_the_same(self, error: Exception, maybe_applied: bool) -> None:
        """Through HttpxTransport (the dispatch unit tests' seam) a connect timeout is not sent
        and a read timeout is ambiguous."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise error

        failure = _send_through(HttpxTransport(httpx.MockTransport(handler)), timeout=5)
        assert failure.maybe_applied is maybe_applied

    @pytest.mark.parametrize("repeatable", [True, False])
    def test_a_not_sent_failure_is_retried_for_every_operation(self, repeatable: bool) -> None:
        """The retry policy retries a failure that never connected, even for a refund; an
        ambiguous one on a refund ends unknown."""
        attempts = record(Attempts(), NoAnswer("could not connect: x", maybe_applied=False))
        step = next_step(
            NoAnswer("could not connect: x", maybe_applied=False),
            attempts,
            repeatable=repeatable,
            policy=POLICY,
        )
        assert isinstance(step, Retry)
        ambiguous = NoAnswer("no answer in time", maybe_applied=True)
        step = next_step(ambiguous, record(Attempts(), ambiguous), repeatable=False, policy=POLICY)
        assert isinstance(step, Done) and step.status.value == "unknown"


def test_the_real_client_reports_a_full_backlog_as_not_sent() -> None:
    """aiohttp against a port whose accept queue is full: the SYN is dropped, the connect
    times out (the deadline and aiohttp's connect timeout are the same 0.5 s), and the failure
    is could not connect, not maybe applied."""
    with BacklogGate(1, closed_seconds=60) as gate:

        async def go() -> None:
            async with make_client(timeout_seconds=0.5, max_connections=1) as client:
                await send(client, "PATCH", gate.url + "/x", headers={}, body="{}")

        for _ in range(3):  # either timer may fire first; both must mean the same
            with pytest.raises(SendFailure) as caught:
                anyio.run(go)
            assert caught.value.maybe_applied is False, caught.value
            assert "could not connect" in str(caught.value)


@pytest.mark.usefixtures("keys_in_env")
def test_a_connect_timeout_on_a_refund_is_retried_and_applied_once(
    seed: dict[str, Any], tmp_path: Path
) -> None:
    """A coin refund (redemption-status, not repeatable) whose first connection attempts time
    out (a full accept queue) is retried once the port accepts, and applied: the sandbox's
    request log shows it once and the coins were refunded once."""
    target = refund_transaction("connect")
    seed["redemptionTransactions"].append(
        {
            "transactionId": target,
            "communityID": ACME_ID,
            "statusId": "695e00000000000000000000",
            "coins": 100,
            "refunded": False,
        }
    )
    source = tmp_path / "in.csv"
    source.write_text(
        f"community,transactionId,statusId,refundCoins\nacme,{target},{REFUNDED},yes\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    with SandboxServer(SandboxState(seed, Faults())) as sandbox:
        warm = write_job(tmp_path / "warm.toml", sandbox.url, operation="redemption-status")
        # A dry run first: the imports are done, so the real run reaches the gate while closed.
        assert run("run", source, "--job", warm, "--out", tmp_path / "dry.csv", "--dry-run") == 0
        with BacklogGate(sandbox.port, closed_seconds=1.5) as gate:
            job = write_job(
                tmp_path / "job.toml",
                gate.url,
                operation="redemption-status",
                concurrency=1,
                timeout_seconds=0.5,
                backoff_base_seconds=0.01,
                max_attempts=8,
            )
            started = time.monotonic()
            code = run("run", source, "--job", job, "--out", out)
            assert time.monotonic() - started > 1.5  # the first attempts met a closed gate
        sent = sandbox_requests_naming(sandbox, target)
        refunds = {
            t["transactionId"]: t.get("refunds", 0)
            for t in sandbox.state.snapshot()["redemptionTransactions"]
        }
    row = read_results(out).row(0, named=True)
    assert code == 0, row
    assert row["status"] == "applied", row
    assert int(row["attempts"]) >= 2, row  # at least one attempt never connected
    assert sent == 1 and refunds[target] == 1
