"""What one emulated endpoint declares, and the API's response envelope."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TypeAlias

from reconcile.json_types import JSON
from reconcile.sandbox.records import Community, Grant
from reconcile.sandbox.state import SandboxState

#: Request headers -> (community, permissions), or None for 401.
Authenticate: TypeAlias = Callable[[Mapping[str, str], SandboxState], Grant | None]

AnswerBody: TypeAlias = Mapping[str, object]
"""An answer's body, serialised as JSON: built from the request's JSON and stored records."""


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request as an endpoint's ``apply`` sees it."""

    community: Community
    """The community (tenant) the credentials named, as seeded."""
    params: dict[str, str]
    """Path parameters, percent-decoded."""
    query: dict[str, str]
    body: JSON
    """The parsed JSON body (None when empty)."""
    fail_mid_write: bool = False
    """A fault: fail between two writes, to show that they commit together or not at all."""


Apply: TypeAlias = Callable[[SandboxState, Call], tuple[int, AnswerBody]]


#: What a JavaScript API's ``String.prototype.trim`` removes: ECMAScript's WhiteSpace and
#: LineTerminator characters (not the C0 separators \x1c-\x1f that Python's ``str.strip`` takes).
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def js_trim(text: str) -> str:
    """``text.trim()`` as the emulated APIs (Node.js services) compute it."""
    return text.strip(JS_WHITESPACE)


class ApiError(Exception):
    """An answer other than success: status, the API's message and, for APIs that number
    their errors (Capillary's 667), that number."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    method: str
    path: str
    permission: str | None
    """What the credential must be allowed to do (None: any credential of the community)."""
    apply: Apply
    """(state, call) -> (status, answer); raises ApiError. Called under the state lock: all its
    writes commit together or not at all (``fail_mid_write`` makes it fail between two writes,
    to show that)."""
    authenticate: Authenticate | None = None
    """How a request names its community (default: a Bearer key)."""
    error_body: Callable[[ApiError], AnswerBody] | None = None
    """The API's error envelope for this endpoint (default: ``envelope``)."""

    def error(self, error: ApiError) -> AnswerBody:
        if self.error_body is None:
            return envelope(error.status, error.message)
        return self.error_body(error)


def envelope(status: int, message: str, data: object = None) -> AnswerBody:
    """Returning.AI's envelope: ``meta`` (status, statusCode), ``message`` and any ``data``."""
    body: dict[str, object] = {
        "meta": {"status": "success" if status < 400 else "error", "statusCode": status},
        "message": message,
    }
    if data is not None:
        body["data"] = data
    return body


def bearer_key(headers: Mapping[str, str], state: SandboxState) -> Grant | None:
    """Returning.AI: ``Authorization: Bearer <key>``; the key names the community."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return state.community_for(token.strip())


def app_token(headers: Mapping[str, str], state: SandboxState) -> Grant | None:
    """Voucherify: ``X-App-Id`` + ``X-App-Token`` name a project (our community)."""
    return state.app_for(headers.get("x-app-id", ""), headers.get("x-app-token", ""))
