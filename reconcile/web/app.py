"""The console's Starlette app: sign-in, upload and check, approvals, runs, history.

Every route checks who is signed in and their role; a run that is not the user's to see
answers 404. Every form post carries the session's CSRF token. Pages are Jinja2 templates with
autoescape on; the only script is ``static/progress.js`` (live progress), served from here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reconcile.audit import MAX_NOTE_CHARS
from reconcile.table import INPUT_SUFFIXES
from reconcile.web import verify_views, views
from reconcile.web.console import Console, Upload
from reconcile.web.errors import Forbidden, NotFound
from reconcile.web.security import (
    SESSION_COOKIE,
    BodyLimit,
    SecurityHeaders,
    Signer,
    TooLarge,
    TrustedProxy,
    same_token,
)
from reconcile.web.users import SESSION_HOURS, Session, User, UserStore

log = structlog.get_logger("reconcile.web")
HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How the console is served."""

    max_upload_mb: float = 20.0
    trust_user_header: str | None = None
    """A reverse proxy's SSO header naming the user, believed only from ``trusted_proxy``."""
    trusted_proxy: str | None = None
    demo: bool = False


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
        self.templates.filters["when"] = _when
        self.templates.globals["max_note_chars"] = MAX_NOTE_CHARS
        self.templates.globals["input_suffixes"] = INPUT_SUFFIXES

    # -- rendering and sessions ----------------------------------------------------------------

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
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

    async def posted(self, request: Request) -> tuple[Session, Any]:
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


def _when(iso: str | None, seconds: bool = False) -> str:
    """An ISO timestamp as people read it: ``2026-12-02 20:39 UTC`` (with seconds for logs)."""
    if not iso:
        return ""
    moment = dt.datetime.fromisoformat(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


Handler = Callable[[Web, Request], Awaitable[Response]]


def create_app(
    console: Console, users: UserStore, signer: Signer, settings: Settings | None = None
) -> Any:
    """The console's ASGI app (security headers and the upload limit around the routes)."""
    settings = settings or Settings()
    web = Web(console, users, signer, settings)

    def bound(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                response = await handler(web, request)
            except TooLarge:
                response = web.page(
                    request,
                    "error.html",
                    413,
                    title="File too large",
                    message=f"The file is larger than {settings.max_upload_mb:g} MB, the "
                    "console's limit. Split it into smaller files, or ask for the limit to be "
                    "raised (reconcile serve --max-upload-mb).",
                )
            new = request.scope.get("reconcile.new_cookie")
            if new:
                web.set_cookie(response, request, SESSION_COOKIE, new, SESSION_HOURS)
            return response

        return endpoint

    routes: list[BaseRoute] = [
        Route(p, bound(h), methods=[m]) for p, m, h in [*views.ROUTES, *verify_views.ROUTES]
    ]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["location"] if exc.headers else "/", 303)
        titles = {403: "Not allowed", 404: "Not found", 400: "Cannot use this request"}
        return web.page(
            request,
            "error.html",
            exc.status_code,
            title=titles.get(exc.status_code, "Error"),
            message=exc.detail,
        )

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    limit = int(settings.max_upload_mb * 1024 * 1024) + 64 * 1024  # the form's own fields
    return TrustedProxy(SecurityHeaders(BodyLimit(app, limit)), settings.trusted_proxy)
