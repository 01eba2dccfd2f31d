"""What every page handler works with: the console's settings, the app's state (:class:`Web`:
the console, users, cookie signer and templates, with the session and form checks every route
makes), the handler type, and the refusals shown on the error page.

Views import this module, never the app factory (reconcile.web.app), which imports the views.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from reconcile.audit import MAX_NOTE_CHARS
from reconcile.table import INPUT_SUFFIXES
from reconcile.web.console import Console
from reconcile.web.security import SESSION_COOKIE, Signer, same_token
from reconcile.web.uploads import Upload
from reconcile.web.users import Session, User, UserStore

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How the console is served."""

    max_upload_mb: float = 20.0
    trust_user_header: str | None = None
    """A reverse proxy's SSO header naming the user, believed only from ``trusted_proxy``."""
    trusted_proxy: str | None = None
    demo: bool = False


class Forbidden(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(403, detail)


class NotFound(HTTPException):
    def __init__(self) -> None:
        super().__init__(404, "There is no such run, or it is not yours to see.")


def as_sentence(error: Exception) -> str:
    """A library error (``the password is too short: ...``) as the page shows it: a sentence."""
    text = str(error)
    return text[:1].upper() + text[1:] + "."


class Web:
    """The app's state and its handlers."""

    def __init__(
        self, console: Console, users: UserStore, signer: Signer, settings: Settings
    ) -> None:
        self.console, self.users, self.signer, self.settings = console, users, signer, settings
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = when
        self.templates.globals["max_note_chars"] = MAX_NOTE_CHARS
        self.templates.globals["input_suffixes"] = INPUT_SUFFIXES

    # -- rendering and sessions ----------------------------------------------------------------

    def page(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> HTMLResponse:
        session: Session | None = request.scope.get("reconcile.session")
        text = self.templates.get_template(name).render(
            session=session,
            user=session.user if session else None,
            csrf_token=session.csrf_token if session else "",
            path=request.url.path,
            demo=self.settings.demo,
            **context,
        )
        return HTMLResponse(text, status_code=status)

    def session(self, request: Request) -> Session | None:
        """The signed-in session: the signed cookie's, or a trusted proxy's SSO user."""
        found: Session | None = request.scope.get("reconcile.session")
        if found is not None:
            return found
        token = self.signer.read(request.cookies.get(SESSION_COOKIE))
        session = self.users.session(token) if token else None
        named = self._proxy_name(request)
        if named is not None:
            # The proxy's header says who this request is, now: a cookie of anyone else (the
            # previous SSO user of this browser) is ended, not believed for its 8 hours.
            if session is not None and session.user.name != named and token:
                self.users.close_session(token)
                session = None
            if session is None:
                session = self._proxy_session(request)
        request.scope["reconcile.session"] = session
        return session

    def _proxy_name(self, request: Request) -> str | None:
        """The user name the trusted proxy's SSO header gives (None: no proxy or no header)."""
        header = self.settings.trust_user_header
        if not header or not request.scope.get("reconcile.via_proxy"):
            return None
        return request.headers.get(header, "").strip() or None

    def _proxy_user(self, request: Request) -> User | None:
        name = self._proxy_name(request)
        user = self.users.get(name) if name else None
        return None if user is None or user.disabled else user

    def _proxy_session(self, request: Request) -> Session | None:
        user = self._proxy_user(request)
        if user is None:
            return None
        token = self.users.open_session(user)
        request.scope["reconcile.new_cookie"] = token
        return self.users.session(token)

    def signed_in(self, request: Request, *, changing_password: bool = False) -> Session:
        """The session, or a redirect: to sign in, or (a one-time password) to set one's own
        password before anything else."""
        session = self.session(request)
        if session is None:
            raise HTTPException(303, headers={"location": "/login"})
        if session.user.must_change_password and not changing_password:
            raise HTTPException(303, headers={"location": "/password"})
        return session

    async def posted(self, request: Request) -> tuple[Session, FormData]:
        """A form post by a signed-in user with the session's CSRF token; 403 otherwise."""
        session = self.session(request)
        form = await request.form(max_files=1, max_fields=20)
        given = str(form.get("csrf_token") or "")
        if session is None or not same_token(given, session.csrf_token):
            raise Forbidden("The form has expired or did not come from this site: reload it.")
        allowed = request.url.path in ("/password", "/logout")
        if session.user.must_change_password and not allowed:
            raise Forbidden("Set your own password first (your password was a one-time one).")
        return session, form

    def visible(self, session: Session, run_id: str) -> Upload:
        upload = self.console.upload(run_id)
        if upload is None or not (session.user.sees_all_runs or upload.maker == session.user.name):
            raise NotFound
        return upload

    def set_cookie(
        self, response: Response, request: Request, name: str, value: str, hours: float
    ) -> None:
        """A signed HttpOnly SameSite=Lax cookie, Secure when the request came over TLS."""
        response.set_cookie(
            name,
            self.signer.sign(value),
            max_age=int(hours * 3600),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    def audit(self, upload: Upload, user: User, action: str, detail: str = "") -> None:
        self.console.record(self.console.job(upload.job), upload.run_id, user, action, detail)


def when(iso: str | None, seconds: bool = False) -> str:
    """An ISO timestamp as people read it: ``2026-12-02 20:39 UTC`` (with seconds for logs)."""
    if not iso:
        return ""
    moment = dt.datetime.fromisoformat(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


#: A route's handler: the app's state and the request in, the answer out.
Handler = Callable[[Web, Request], Awaitable[Response]]
#: The routes a views module serves: (path, method, handler).
Routes = list[tuple[str, str, Handler]]
