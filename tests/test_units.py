"""Pure functions and small units: no network needed."""

from __future__ import annotations

import email.utils
import io
import types

import aiohttp
import anyio
import httpx
import pytest
import structlog
import yarl
from rich.console import Console

from reconcile import __all__ as exported
from reconcile.client import aiohttp_failure, httpx_failure, parse_retry_after
from reconcile.logs import redact, register_secret
from reconcile.outcome import Status
from reconcile.pacing import Pacer
from reconcile.progress import ProgressReporter
from reconcile.retry import RetryPolicy


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after("7") == 7.0

    def test_http_date(self) -> None:
        now = 1_800_000_000.0
        header = email.utils.formatdate(now + 30, usegmt=True)
        assert parse_retry_after(header, now=now) == pytest.approx(30, abs=1)

    def test_date_in_the_past_means_now(self) -> None:
        assert parse_retry_after(email.utils.formatdate(0, usegmt=True)) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon"])
    def test_unusable(self, value: str | None) -> None:
        assert parse_retry_after(value) is None


def test_backoff_is_full_jitter_doubling_and_capped() -> None:
    import random

    rng = random.Random(3)
    policy = RetryPolicy(
        max_attempts=5, backoff_base_seconds=0.5, jitter=lambda c: rng.uniform(0, c)
    )
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        samples = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # it uses the whole range


def test_redaction_masks_keys_and_authorization() -> None:
    register_secret("s3cr3t-key-value")
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "url": "https://h/?k=s3cr3t-key-value",
            "Authorization": "Bearer z",
            "headers": {"authorization": "Bearer z", "ok": "s3cr3t-key-value"},
        },
    )
    assert "s3cr3t-key-value" not in str(event) and "Bearer z" not in str(event)


class TestPacer:
    def test_pause_slows_down_and_recovers(self) -> None:
        pacer = Pacer(10)
        pacer.pause(0)
        assert pacer.rate == 7.5
        for _ in range(100):
            pacer.succeeded()
        assert pacer.rate == 10

    def test_no_start_up_burst(self) -> None:
        """Five acquisitions at 5/s take at least 4 intervals: no bucket starts full."""
        import time

        async def five() -> float:
            pacer = Pacer(5)
            started = time.monotonic()
            for _ in range(5):
                await pacer.acquire()
            return time.monotonic() - started

        assert anyio.run(five) >= 0.8


def test_progress_lines_without_a_terminal() -> None:
    with (
        structlog.testing.capture_logs() as logs,
        ProgressReporter({"acme": 3}, tty=False, log_every=0) as progress,
    ):
        progress("acme", Status.APPLIED)
        progress("acme", Status.REJECTED)
    lines = [e for e in logs if e["event"] == "run.progress"]
    assert [line["done"] for line in lines] == [1, 2]
    assert lines[-1]["total"] == 3 and lines[-1]["community"] == "acme"


def test_quiet_progress_says_nothing() -> None:
    with (
        structlog.testing.capture_logs() as logs,
        ProgressReporter({"acme": 1}, tty=False, quiet=True, log_every=0) as progress,
    ):
        progress("acme", Status.APPLIED)
    assert logs == []


def test_progress_bars_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    reporter = ProgressReporter({"acme": 2, "globex": 1}, tty=True, console=console)
    with reporter:
        reporter("acme", Status.APPLIED)
        reporter("globex", Status.APPLIED)
    text = buffer.getvalue()
    assert "acme" in text and "globex" in text and "rows/s" in text


def test_public_api_is_curated() -> None:
    assert exported == sorted(exported)


class TestSendFailures:
    """Each aiohttp error becomes a SendFailure that says whether the request may have reached
    the server."""

    def test_a_connection_never_made_was_not_sent(self) -> None:
        """Refused connections and connect timeouts prove nothing was sent."""
        key = types.SimpleNamespace(host="127.0.0.1", port=1, ssl=True)
        refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]
        failure = aiohttp_failure(refused)
        assert not failure.maybe_applied
        assert str(failure).startswith("could not connect: ")
        assert not aiohttp_failure(aiohttp.ConnectionTimeoutError()).maybe_applied

    @pytest.mark.parametrize(
        "cause",
        [
            aiohttp.ServerDisconnectedError(),
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            aiohttp.ClientPayloadError("short body"),
            aiohttp.ClientResponseError(
                aiohttp.RequestInfo(yarl.URL("http://127.0.0.1/x"), "PUT", {}),  # type: ignore[arg-type]
                (),
                status=400,
                message="Bad status line",
            ),
            ValueError("anything else the library raises"),
        ],
    )
    def test_a_server_that_hung_up_or_spoke_garbage_may_have_applied_it(
        self, cause: Exception
    ) -> None:
        """Once a connection was open, every failure may have come after the write."""
        failure = aiohttp_failure(cause)
        assert failure.maybe_applied
        assert str(failure).startswith("connection lost: ")
        assert type(cause).__name__ in str(failure)

    def test_a_read_timeout_is_no_answer_in_time(self) -> None:
        """A read timeout may have applied it, and says it timed out."""
        read_timeout = aiohttp_failure(aiohttp.SocketTimeoutError())
        assert read_timeout.maybe_applied
        assert str(read_timeout).startswith("no answer in time")

    def test_httpx_transport_errors_keep_their_meaning(self) -> None:
        """Errors raised by an httpx transport (MockTransport in tests) mean the same."""
        assert not httpx_failure(httpx.ConnectError("refused")).maybe_applied
        assert not httpx_failure(httpx.PoolTimeout("pool")).maybe_applied
        assert httpx_failure(httpx.ReadTimeout("slow")).maybe_applied
        assert httpx_failure(httpx.RemoteProtocolError("cut")).maybe_applied


def test_a_plan_hash_over_slices_equals_the_hash_of_the_whole_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hashing a legacy plan's rows a slice at a time gives exactly the SHA-256 of the header
    line and all rows' NDJSON written at once (plans made before RFC 8785 keep verifying)."""
    import hashlib

    import polars as pl

    from reconcile import hashing

    monkeypatch.setattr(hashing, "HASHED_ROWS_PER_SLICE", 7)
    rows = pl.DataFrame(
        {
            "row": [str(n) for n in range(50)],
            "community": ["acme"] * 50,
            "status": ["would_apply"] * 49 + ["invalid"],
            "request": ['PATCH /v1/x {"a":"é\\n"}'] * 49 + [None],
            "error": [None] * 49 + ["Community: is empty"],
        }
    )
    whole = hashlib.sha256(hashing.legacy_canonical({"run_id": "r"}).encode() + b"\n")
    whole.update(rows.write_ndjson().encode())
    assert hashing.legacy_plan_hash({"run_id": "r"}, rows) == whole.hexdigest()
