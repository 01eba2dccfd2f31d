"""The sandbox ASGI app: the pipeline every emulated endpoint shares.

key -> community (401/403) -> rate limit (429) -> faults -> the endpoint's own rules and write.
Each endpoint is one module of this package exposing ``ENDPOINT``, found by discovery.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import sys
import time
import urllib.parse

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from reconcile.json_types import JSON
from reconcile.sandbox.endpoint import ApiError, Call, Endpoint, bearer_key
from reconcile.sandbox.records import RequestEntry
from reconcile.sandbox.state import FaultRule, SandboxState


@functools.cache
def endpoints() -> tuple[Endpoint, ...]:
    """Every module of this package that defines ``ENDPOINT`` (its vendor's emulation)."""
    package = "reconcile.sandbox"
    found = []
    for module in sorted(m.name for m in pkgutil.iter_modules(sys.modules[package].__path__)):
        endpoint = getattr(importlib.import_module(f"{package}.{module}"), "ENDPOINT", None)
        if isinstance(endpoint, Endpoint):
            found.append(endpoint)
    return tuple(found)


LOGGED_HEADERS = ("user-agent", "content-type", "skip-downstream")


class DroppedConnection(Exception):
    """Raised after the response has started: the server cuts the connection."""


class _Dropped(Response):
    """Starts an answer, then fails: the server closes the socket mid-answer, so the client
    sees the connection cut, as on a real network."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise DroppedConnection


def _error(
    endpoint: Endpoint, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = endpoint.error(ApiError(status, message))
    return JSONResponse(body, status_code=status, headers=headers)


async def _handle(request: Request, endpoint: Endpoint, state: SandboxState) -> Response:
    started = time.time()
    entry: RequestEntry = {
        "time": started,
        "method": request.method,
        "path": urllib.parse.unquote(request.url.path),
        "raw_path": request.url.path,
        "query": request.url.query,
        "endpoint": endpoint.name,
        # A few headers worth asserting on; never the credentials.
        "headers": {h: request.headers[h] for h in LOGGED_HEADERS if h in request.headers},
    }
    response = await _answer(request, endpoint, state, entry)
    entry["status"] = response.status_code
    state.record(entry)
    return response


async def _answer(
    request: Request, endpoint: Endpoint, state: SandboxState, entry: RequestEntry
) -> Response:
    found = (endpoint.authenticate or bearer_key)(request.headers, state)
    if found is None:
        return _error(endpoint, 401, "Unauthorized: missing or invalid credentials")
    community, permissions = found
    entry["community"] = community["name"]
    if endpoint.permission is not None and endpoint.permission not in permissions:
        return _error(
            endpoint, 403, f"Forbidden: the API key lacks the {endpoint.permission} permission"
        )
    # Per key (Returning.AI) or per application (Voucherify): the credential, not the endpoint.
    identity = request.headers.get("authorization") or request.headers.get("x-app-id", "")
    wait = state.retry_after(identity)
    if wait > 0:
        return _error(
            endpoint, 429, "Too many requests", {"Retry-After": str(max(1, round(wait + 0.5)))}
        )
    raw = await request.body()
    entry["body"] = raw.decode("utf-8", "replace")
    fired = state.pick_faults(request.url.path)
    for rule in fired:
        if rule.kind == "latency":
            await anyio.sleep(rule.seconds)
    entry["faults"] = [r.kind for r in fired]
    for rule in fired:
        if rule.kind == "error_before":
            return _error(
                endpoint, rule.status, "Injected failure before the write", _retry_after(rule)
            )
        if rule.kind == "drop":
            return _Dropped()
    try:
        body: JSON = json.loads(raw) if raw else None
    except ValueError:
        return _error(endpoint, 400, "Request body is not valid JSON")
    try:
        with state.lock:
            status, payload = endpoint.apply(
                state,
                Call(
                    community=community,
                    params={k: urllib.parse.unquote(v) for k, v in request.path_params.items()},
                    query=dict(request.query_params),
                    body=body,
                    fail_mid_write=any(r.kind == "error_mid_write" for r in fired),
                ),
            )
    except ApiError as exc:
        entry["committed"] = False
        return JSONResponse(endpoint.error(exc), status_code=exc.status)
    entry["committed"] = True
    for rule in fired:
        if rule.kind == "error_after":
            return _error(
                endpoint, rule.status, "Bad Gateway: the publisher timed out", _retry_after(rule)
            )
    return JSONResponse(payload, status_code=status)


def _retry_after(rule: FaultRule) -> dict[str, str] | None:
    return None if rule.retry_after is None else {"Retry-After": str(rule.retry_after)}


def _route(endpoint: Endpoint, state: SandboxState) -> Route:
    async def handler(request: Request) -> Response:
        return await _handle(request, endpoint, state)

    return Route(endpoint.path, handler, methods=[endpoint.method])


def create_app(state: SandboxState) -> _RawPathRouting:
    """The sandbox app over ``state``; state/requests dumps live under /_sandbox/."""

    async def dump_state(_: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def dump_requests(_: Request) -> Response:
        with state.lock:
            return JSONResponse(list(state.requests))

    routes = [_route(e, state) for e in endpoints()]
    routes += [
        Route("/_sandbox/state", dump_state, methods=["GET"]),
        Route("/_sandbox/requests", dump_requests, methods=["GET"]),
    ]
    return _RawPathRouting(Starlette(routes=routes))


class _RawPathRouting:
    """Route on the path as it arrived, still percent-encoded, as a real API gateway does: an
    ID holding ``%2F`` or ``%2E%2E`` stays one path segment (handlers decode their parameters),
    instead of the server's decoded path splitting or resolving it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("raw_path"):
            scope = {**scope, "path": scope["raw_path"].decode("latin-1")}
        await self.app(scope, receive, send)
