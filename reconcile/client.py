"""The HTTP client, and the one place that knows the HTTP libraries' exceptions.

httpx is the client API; underneath, :class:`AiohttpTransport` sends over aiohttp, chosen by
measurement (bench/README.md): httpx's default transport costs several times more CPU per request
at 50 in flight on this 2-core class of machine. The transport is ours, not a library's, because
a money-moving tool needs three things no packaged adapter gave:

- **nothing is sent twice below the tool**: aiohttp re-sends an idempotent request (PUT, DELETE)
  once on a fresh connection when a kept-alive one is reset; that is switched off, so each
  :func:`send` puts at most one request on the wire (pinned by tests/test_network_faults.py);
- **every failure has a meaning**: each aiohttp error becomes an httpx error saying whether a
  connection was ever made (:class:`httpx.ConnectError`: nothing sent) or not
  (anything else: the request may have reached the server);
- **the URL goes out as written**: paths are percent-encoded by the operations, and the URL is
  handed to aiohttp as already encoded, so ``%2E%2E`` is never decoded into ``..`` and resolved.

``timeout_seconds`` bounds the whole exchange in :func:`send`: connecting, sending, waiting and
reading the answer to its last byte. TLS verification stays on. Cookies are never kept.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ssl
import time
from collections.abc import Mapping

import aiohttp
import anyio
import httpx
import yarl

from reconcile import __version__

USER_AGENT = f"reconcile/{__version__} (+bulk corrections)"
CONNECT_TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: float | None


class SendFailure(Exception):
    """No HTTP answer. ``maybe_applied``: the request may have reached the server (a timeout, a
    cut connection, an answer that is not HTTP), so the outcome is unknown; false only when the
    connection was never made."""

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


def _transport_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that says what an aiohttp error means for the request."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS certificate
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # a status line or headers not HTTP
        return httpx.RemoteProtocolError(text, request=request)
    # Reset, closed mid-answer, short body, or anything else once the connection was open.
    return httpx.ReadError(text, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx over one aiohttp session: pooled keep-alive connections, no library retries."""

    def __init__(self, *, max_connections: int, read_timeout: float) -> None:
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None,  # the whole exchange is bounded by send()
            sock_connect=min(CONNECT_TIMEOUT_SECONDS, read_timeout),
            sock_read=read_timeout,
        )
        self._ssl = ssl.create_default_context()  # verification on, the system's CAs
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=self._timeout,
            auto_decompress=False,  # httpx decodes by Content-Encoding
        )
        # aiohttp has no public switch for its one silent re-send of idempotent requests after
        # a kept-alive connection is reset (RFC 9112 9.3.1 allows it; a refund must not).
        session._retry_connection = False
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        body = await request.aread()
        try:
            async with self._session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                compress=False,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    response.status,
                    headers=response.raw_headers,
                    content=content,
                    request=request,
                )
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # every way an exchange can fail maps to a meaning
            raise _transport_error(exc, request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_client(
    *,
    timeout_seconds: float,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One client for the whole run: pooled keep-alive connections shared by all communities.
    ``transport`` replaces the network (tests pass :class:`httpx.MockTransport`)."""
    return httpx.AsyncClient(
        transport=transport
        or AiohttpTransport(max_connections=max_connections, read_timeout=timeout_seconds),
        timeout=timeout_seconds,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
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
    """Send one request and read its whole answer within the client's timeout; raise
    SendFailure when there is no complete HTTP answer in time."""
    content = body.encode("utf-8") if body is not None else None
    all_headers = dict(headers)
    if content is not None:
        all_headers["Content-Type"] = "application/json"
    deadline = client.timeout.read or CONNECT_TIMEOUT_SECONDS
    try:
        with anyio.fail_after(deadline):
            response = await client.request(method, url, headers=all_headers, content=content)
    except TimeoutError as exc:
        raise SendFailure(
            f"no answer in time (the whole request took over {deadline:g} s)",
            maybe_applied=True,
        ) from exc
    except httpx.HTTPError as exc:
        raise send_failure(exc) from exc
    return Answer(
        status=response.status_code,
        body=response.content,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def send_failure(exc: httpx.HTTPError) -> SendFailure:
    """Why there is no answer, and whether the request may have reached the server: only a
    connection never made (refused, unreachable, TLS certificate refused, no pool slot in
    time) proves it did not."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return SendFailure(f"could not connect: {exc}", maybe_applied=False)
    if isinstance(exc, httpx.TimeoutException):
        return SendFailure(f"no answer in time ({exc})", maybe_applied=True)
    return SendFailure(f"connection lost: {type(exc).__name__} ({exc})", maybe_applied=True)
