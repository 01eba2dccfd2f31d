"""The console's request guards: security headers, the upload size limit, signed session
cookies and CSRF tokens. Pure ASGI where they wrap the app, plain functions otherwise."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconcile import atomic

SESSION_COOKIE = "reconcile_session"
LOGIN_CSRF_COOKIE = "reconcile_login_csrf"

#: Every page: scripts, styles, images, forms and fetches from this origin only; never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: A generated HTML report (its own inline styles, no script at all).
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"

HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds the security headers to every answer (a route may set its own CSP first)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                if scope.get("scheme") == "https":
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class TrustedProxy:
    """Requests from the reverse proxy at ``address``: their scheme (``X-Forwarded-Proto``) and
    client address (``X-Forwarded-For``) are taken from its headers, and the request is marked
    as having come through it (only then is an SSO user header believed). Anyone else's
    forwarding headers are ignored."""

    def __init__(self, app: ASGIApp, address: str | None) -> None:
        self.app, self.address = app, address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] == "http" and self.address and peer and peer[0] == self.address:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            scope = {**scope, "reconcile.via_proxy": True}
            proto = headers.get("x-forwarded-proto", "").strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
            forwarded = headers.get("x-forwarded-for", "").split(",")[0].strip()
            if forwarded:
                scope["client"] = (forwarded, 0)
        await self.app(scope, receive, send)


class TooLarge(Exception):
    """The request body passed the upload limit."""


class BodyLimit:
    """Counts request body bytes as they arrive and stops at ``limit``: an upload over the
    limit is refused (413) without being held whole, whatever its Content-Length claims."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise TooLarge
            return message

        await self.app(scope, counted, send)


def load_secret(state_dir: Path) -> str:
    """The key that signs session cookies: made once per state dir, readable by its owner only
    (sessions survive a restart; deleting the file signs everyone out)."""
    path = state_dir / "console.secret"
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        atomic.write_text(path, secrets.token_urlsafe(48), permissions=0o600)
    return path.read_text(encoding="utf-8").strip()


class Signer:
    """Signs and reads the cookie values (the session token, the sign-in form's CSRF token)."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="reconcile-console")

    def sign(self, value: str) -> str:
        return str(self._serializer.dumps(value))

    def read(self, signed: str | None) -> str | None:
        if not signed:
            return None
        try:
            value = self._serializer.loads(signed)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


def same_token(given: str | None, expected: str | None) -> bool:
    """A CSRF token check in constant time; a missing token never matches."""
    return bool(given and expected) and hmac.compare_digest(str(given), str(expected))
