"""The HTTP client, and the one place that knows httpx's exceptions.

httpx is the client API; its transport is aiohttp's (``httpx-aiohttp``), chosen by measurement
(bench/README.md): httpx's default transport costs several times more CPU per request at 50 in
flight on this 2-core class of machine. TLS verification stays on.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from reconcile import __version__

USER_AGENT = f"reconcile/{__version__} (+bulk corrections)"


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: float | None


class SendFailure(Exception):
    """No HTTP answer. ``maybe_applied``: the request may have reached the server (a read
    timeout or a cut connection), so the outcome is unknown; false only when the connection was
    never made."""

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


def make_client(*, timeout_seconds: float, max_connections: int) -> httpx.AsyncClient:
    """One client for the whole run: pooled keep-alive connections shared by all communities."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    timeout = httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds))
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: str | None,
) -> Answer:
    """Send one request; raise SendFailure when there is no answer."""
    content = body.encode("utf-8") if body is not None else None
    all_headers = dict(headers)
    if content is not None:
        all_headers["Content-Type"] = "application/json"
    try:
        response = await client.request(method, url, headers=all_headers, content=content)
    except httpx.HTTPError as exc:
        raise send_failure(exc) from exc
    return Answer(
        status=response.status_code,
        body=response.content,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def send_failure(exc: httpx.HTTPError) -> SendFailure:
    """Why there is no answer, and whether the request may have reached the server.

    The aiohttp transport maps every aiohttp connection error to ``httpx.ConnectTimeout``: a
    refused connection or a rejected certificate (nothing sent) as well as a server that hung
    up after reading the request (maybe applied). So the aiohttp error it wraps decides.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else None
    if cause is not None:
        never_connected = isinstance(
            cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
        )
        timed_out = isinstance(cause, aiohttp.ServerTimeoutError)
    else:  # httpx's own transport says what it means
        never_connected = isinstance(
            exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
        )
        timed_out = isinstance(exc, httpx.TimeoutException)
    reason = cause or exc
    if never_connected:
        return SendFailure(f"could not connect: {reason}", maybe_applied=False)
    if timed_out:
        return SendFailure(f"no answer in time ({type(reason).__name__})", maybe_applied=True)
    return SendFailure(f"connection lost: {type(reason).__name__} {reason}", maybe_applied=True)
