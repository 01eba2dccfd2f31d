"""The HTTP client, and the one place that knows the HTTP libraries' exceptions.

:class:`AiohttpTransport` sends over aiohttp, chosen by measurement (bench/README.md): httpx's
default transport costs several times more CPU per request at 50 in flight on this 2-core class
of machine, and httpx's request and response models on top of aiohttp still cost about half of
the tool's client CPU, so the send path calls aiohttp directly. The seam is
:class:`Transport`: one exchange in, an :class:`Answer` or a :class:`SendFailure` out. Unit tests
plug any httpx transport into it (:class:`HttpxTransport` around ``httpx.MockTransport``).

The transport is ours, not a library's, because a money-moving tool needs three things no
packaged adapter gave:

- **nothing is sent twice below the tool**: aiohttp re-sends an idempotent request (PUT, DELETE)
  once on a fresh connection when a kept-alive one is reset; that is switched off, so each
  :func:`send` puts at most one request on the wire (pinned by tests/test_network_faults.py);
- **every failure has a meaning**: each aiohttp error becomes a :class:`SendFailure` saying
  whether the request may have reached the server: only a connection never made proves it did
  not;
- **the URL goes out as written**: paths are percent-encoded by the operations, and the URL is
  handed to aiohttp as already encoded, so it is not re-encoded or normalised here (IDs of only
  dots are refused by the file rules: no encoding of them survives every resolver).

``timeout_seconds`` bounds the whole exchange in :func:`send`: connecting, sending, waiting and
reading the answer to its last byte. When it runs out, what decides the meaning is whether the
request was written: a trace marks the moment aiohttp hands the headers to the connection
(:class:`Progress`); before it (waiting for a pool slot, resolving, connecting) nothing left the
process, so the failure is "could not connect" and safe to retry, whatever the operation. TLS verification stays on. Cookies are never kept.
"""

from __future__ import annotations

import contextvars
import dataclasses
import email.utils
import time
import types
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import aiohttp
import anyio
import yarl

from reconcile.version import __version__

if TYPE_CHECKING:
    import httpx

USER_AGENT = f"reconcile/{__version__} (+bulk corrections)"


@dataclasses.dataclass(slots=True)
class Progress:
    """How far one exchange got: ``written`` once the request may be on the wire."""

    written: bool = False


_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "reconcile_send_progress", default=None
)


def current_progress() -> Progress:
    """The progress of the exchange :func:`send` is running (a fresh one outside send)."""
    return _progress.get() or Progress()


async def _on_headers_sent(
    session: aiohttp.ClientSession,
    context: types.SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    # Fired just before the headers are written: from here on the server may act on them.
    progress = context.trace_request_ctx
    if isinstance(progress, Progress):
        progress.written = True


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


class Transport(Protocol):
    """One HTTP exchange: the answer read to its last byte, or a SendFailure. Never re-sends."""

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer: ...

    async def aclose(self) -> None: ...


def could_not_connect(cause: object) -> SendFailure:
    """Nothing was sent: the connection was never made (refused, unreachable, TLS refused)."""
    return SendFailure(f"could not connect: {cause}", maybe_applied=False)


def no_answer_in_time(cause: object) -> SendFailure:
    return SendFailure(f"no answer in time ({cause})", maybe_applied=True)


def connection_lost(kind: str, cause: object) -> SendFailure:
    """The connection was open, so the request may have been acted on."""
    return SendFailure(f"connection lost: {kind} ({cause})", maybe_applied=True)


def aiohttp_failure(exc: Exception) -> SendFailure:
    """What an aiohttp error means for the request."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError)):
        return could_not_connect(text)  # refused, DNS, TLS certificate, connect timeout
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return no_answer_in_time(text)
    if isinstance(exc, aiohttp.ClientResponseError):  # a status line or headers not HTTP
        return connection_lost("not an HTTP answer", text)
    # Reset, closed mid-answer, short body, or anything else once the connection was open.
    return connection_lost(type(exc).__name__, text)


def _answer(status: int, body: bytes, retry_after: str | None) -> Answer:
    return Answer(status=status, body=body, retry_after=parse_retry_after(retry_after))


class AiohttpTransport:
    """One aiohttp session: pooled keep-alive connections, no library retries, no cookies."""

    def __init__(self, *, max_connections: int, read_timeout: float) -> None:
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None,  # the whole exchange is bounded by send()
            sock_connect=min(CONNECT_TIMEOUT_SECONDS, read_timeout),
            sock_read=read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_headers_sent)
        session = aiohttp.ClientSession(
            # True: aiohttp's verified context (the system's CAs), built once when it is
            # imported; a context of our own would load the CA bundle again at every run.
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=self._timeout,
            trace_configs=[trace],
        )
        # aiohttp has no public switch for its one silent re-send of idempotent requests after
        # a kept-alive connection is reset (RFC 9112 9.3.1 allows it; a refund must not).
        session._retry_connection = False
        return session

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        if self._session is None:
            self._session = self._open()
        progress = current_progress()
        try:
            async with self._session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=False,
                trace_request_ctx=progress,
            ) as response:
                content = await response.read()
                return _answer(response.status, content, response.headers.get("Retry-After"))
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # every way an exchange can fail maps to a meaning
            if isinstance(exc, aiohttp.ClientConnectionError) and not progress.written:
                raise could_not_connect(f"{type(exc).__name__}: {exc}") from exc
            raise aiohttp_failure(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxTransport:
    """Any httpx transport behind the seam: ``httpx.MockTransport`` in the dispatch unit tests."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        import httpx

        request = httpx.Request(method, url, headers=headers, content=body)
        current_progress().written = True  # the seam cannot tell: the handler may act on it
        try:
            response = await self._transport.handle_async_request(request)
            content = await response.aread()
        except httpx.HTTPError as exc:
            raise httpx_failure(exc) from exc
        return _answer(response.status_code, content, response.headers.get("Retry-After"))

    async def aclose(self) -> None:
        await self._transport.aclose()


def httpx_failure(exc: httpx.HTTPError) -> SendFailure:
    """The same meanings for httpx's errors: only a connection never made (refused,
    unreachable, no pool slot in time) proves the request was not sent."""
    import httpx

    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return could_not_connect(exc)
    if isinstance(exc, httpx.TimeoutException):
        return no_answer_in_time(exc)
    return connection_lost(type(exc).__name__, exc)


@dataclasses.dataclass(slots=True)
class Client:
    """One client for the whole run: a transport, the run's timeout, the tool's User-Agent."""

    transport: Transport
    timeout_seconds: float

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.transport.aclose()


def make_client(
    *, timeout_seconds: float, max_connections: int, transport: Transport | None = None
) -> Client:
    """Pooled keep-alive connections shared by all communities. ``transport`` replaces the
    network (tests pass ``HttpxTransport(httpx.MockTransport(...))``)."""
    chosen = transport or AiohttpTransport(
        max_connections=max_connections, read_timeout=timeout_seconds
    )
    return Client(chosen, timeout_seconds)


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
    client: Client,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: str | None,
) -> Answer:
    """Send one request and read its whole answer within the client's timeout; raise
    SendFailure when there is no complete HTTP answer in time."""
    content = body.encode("utf-8") if body is not None else None
    all_headers = {"User-Agent": USER_AGENT, **headers}
    if content is not None:
        all_headers["Content-Type"] = "application/json"
    deadline = client.timeout_seconds or CONNECT_TIMEOUT_SECONDS
    progress = Progress()
    token = _progress.set(progress)
    try:
        with anyio.fail_after(deadline):
            return await client.transport.exchange(method, url, all_headers, content)
    except TimeoutError as exc:
        if not progress.written:  # still waiting for a connection: nothing was sent
            raise could_not_connect(f"no connection within {deadline:g} s") from exc
        raise SendFailure(
            f"no answer in time (the whole request took over {deadline:g} s)",
            maybe_applied=True,
        ) from exc
    finally:
        _progress.reset(token)
