"""The console's Starlette app: sign-in, upload and check, approvals, runs, history.

Every route checks who is signed in and their role; a run that is not the user's to see
answers 404. Every form post carries the session's CSRF token. Pages are Jinja2 templates with
autoescape on; the only script is ``static/progress.js`` (live progress), served from here.
This module only builds the app: what the routes share is in reconcile.web.context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from reconcile.web import verify_views, views
from reconcile.web.console import Console
from reconcile.web.context import HERE, Handler, Settings, Web
from reconcile.web.security import (
    SESSION_COOKIE,
    BodyLimit,
    SecurityHeaders,
    Signer,
    TooLarge,
    TrustedProxy,
)
from reconcile.web.users import SESSION_HOURS, UserStore


def create_app(
    console: Console, users: UserStore, signer: Signer, settings: Settings | None = None
) -> ASGIApp:
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
