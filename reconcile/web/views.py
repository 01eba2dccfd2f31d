"""The console's pages and actions: one handler per route, each checking the role first."""

from __future__ import annotations

import dataclasses
import secrets
from urllib.parse import urlencode

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from reconcile import approval
from reconcile.exceptions import ApprovalError, NoteError, PlanStateError, ReconcileError
from reconcile.web import run_views, tables
from reconcile.web.checking import check, new_page
from reconcile.web.context import Forbidden, Routes, Web, as_sentence
from reconcile.web.downloads import download
from reconcile.web.history import STATUSES, parse_filters
from reconcile.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, same_token
from reconcile.web.users import LOCKOUT_MINUTES, SESSION_HOURS, SignInThrottled


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- signing in and out ----------------------------------------------------------------------


async def login_page(web: Web, request: Request) -> Response:
    if web.session(request) is not None:
        return RedirectResponse("/", 303)
    return _login_form(web, request, None, 200)


def _login_form(web: Web, request: Request, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    response = web.page(request, "login.html", status, login_csrf=token, error=error)
    web.set_cookie(response, request, LOGIN_CSRF_COOKIE, token, 1)
    return response


async def login(web: Web, request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    expected = web.signer.read(request.cookies.get(LOGIN_CSRF_COOKIE))
    if not same_token(str(form.get("csrf_token") or ""), expected):
        raise Forbidden("The sign-in form has expired: reload the page and sign in again.")
    name = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    address = _client(request)
    try:
        user = await anyio.to_thread.run_sync(web.users.authenticate, name, password, address)
    except SignInThrottled:
        message = (
            f"Too many failed sign-ins. Wait {LOCKOUT_MINUTES} minutes and try again, or ask an "
            "administrator to check your account."
        )
        return _login_form(web, request, message, 429)
    if user is None:
        return _login_form(web, request, "Wrong username or password.", 401)
    token = web.users.open_session(user)
    with approval.store(web.console.storage) as audit:
        audit.record_action("", user.name, "sign-in", f"from {_client(request)}")
    response = RedirectResponse("/password" if user.must_change_password else "/", 303)
    web.set_cookie(response, request, SESSION_COOKIE, token, SESSION_HOURS)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


async def logout(web: Web, request: Request) -> Response:
    await web.posted(request)
    token = web.signer.read(request.cookies.get(SESSION_COOKIE))
    if token:
        web.users.close_session(token)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def password_page(web: Web, request: Request) -> Response:
    session = web.signed_in(request, changing_password=True)
    return web.page(request, "password.html", forced=session.user.must_change_password, error=None)


async def change_password(web: Web, request: Request) -> Response:
    session, form = await web.posted(request)
    new = str(form.get("new_password") or "")
    forced = session.user.must_change_password
    if new != str(form.get("confirm_password") or ""):
        error = "The two new passwords differ: type the same one twice."
        return web.page(request, "password.html", 400, forced=forced, error=error)
    try:
        await anyio.to_thread.run_sync(
            web.users.change_password,
            session.user.name,
            str(form.get("current_password") or ""),
            new,
            _client(request),
        )
    except SignInThrottled:
        error = f"Too many wrong passwords. Wait {LOCKOUT_MINUTES} minutes and try again."
        return web.page(request, "password.html", 429, forced=forced, error=error)
    except ReconcileError as exc:
        error = as_sentence(exc)
        return web.page(request, "password.html", 400, forced=forced, error=error)
    token = web.signer.read(request.cookies.get(SESSION_COOKIE)) or ""
    web.users.end_other_sessions(session.user.name, token)
    with approval.store(web.console.storage) as audit:
        audit.record_action("", session.user.name, "password-change", f"from {_client(request)}")
    return RedirectResponse("/", 303)


async def home(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    return RedirectResponse("/new" if session.user.can_submit else "/history", 303)


# -- submit, approve, reject -------------------------------------------------------------------


async def submit(web: Web, request: Request) -> Response:
    session, _ = await web.posted(request)
    if not session.user.can_submit:
        raise Forbidden("Your role cannot submit files for approval.")
    upload = web.visible(session, request.path_params["run_id"])
    try:
        web.console.submit(upload, session.user)
    except ApprovalError as exc:
        raise Forbidden(str(exc)) from None
    return RedirectResponse(f"/runs/{upload.run_id}", 303)


async def decide(web: Web, request: Request) -> Response:
    session, form = await web.posted(request)
    if not session.user.can_approve:
        raise Forbidden("Only approvers can approve or reject a plan.")
    upload = web.visible(session, request.path_params["run_id"])
    approve = request.url.path.endswith("/approve")
    note = str(form.get("note") or "").strip() or None
    if upload.maker == session.user.name:
        raise Forbidden("You made this plan: a colleague must approve or reject it.")
    if not approve and not note:
        raise HTTPException(400, "Say why in the Note field: the maker reads it to fix the file.")
    try:
        web.console.decide(upload, session.user, approve=approve, note=note)
    except PlanStateError as exc:  # not submitted, withdrawn, decided: nothing recorded
        raise HTTPException(409, str(exc)) from None
    except NoteError as exc:  # too long: nothing recorded, the same decision may be retried
        raise HTTPException(400, as_sentence(exc)) from None
    except ApprovalError as exc:
        raise Forbidden(str(exc)) from None
    return RedirectResponse(f"/runs/{upload.run_id}", 303)


async def withdraw(web: Web, request: Request) -> Response:
    session, _ = await web.posted(request)
    upload = web.visible(session, request.path_params["run_id"])
    if upload.maker != session.user.name:
        raise Forbidden("Only the person who submitted this plan can withdraw it.")
    try:
        web.console.withdraw(upload, session.user)
    except PlanStateError as exc:
        raise HTTPException(409, str(exc)) from None
    except ApprovalError as exc:
        raise Forbidden(str(exc)) from None
    return RedirectResponse(f"/runs/{upload.run_id}", 303)


async def approvals(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    if not session.user.can_approve:
        raise Forbidden("Only approvers see the approval queue.")
    waiting = []
    for upload in web.console.uploads():
        if upload.submitted_at is None:
            continue
        with approval.store(web.console.job(upload.job).storage) as audit:
            plan = audit.plan(upload.run_id)
            standing = audit.standing(upload.run_id)
            if plan is None or plan.decision is not None or standing is None:
                continue
            if standing[0] == "withdrawal":
                continue
            counts = tables.status_counts(audit.plan_rows(upload.run_id))
        waiting.append({"upload": upload, "counts": counts})
    return web.page(request, "approvals.html", waiting=waiting)


async def history(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    filters = parse_filters(request.query_params)
    only = None if session.user.sees_all_runs else session.user.name
    found = await anyio.to_thread.run_sync(web.console.history_page, filters, only)
    plans = [plan for run in found.runs if (plan := run["plan_run_id"])]
    uploads = {u.run_id: u for u in web.console.uploads_of(plans)}
    shown = {k: v for k, v in dataclasses.asdict(filters).items() if v and k != "page"}
    return web.page(
        request,
        "history.html",
        history=found,
        runs=found.runs,
        uploads=uploads,
        jobs=sorted(web.console.jobs),
        statuses=STATUSES,
        query=urlencode(shown),
    )


ROUTES: Routes = [
    ("/login", "GET", login_page),
    ("/login", "POST", login),
    ("/logout", "POST", logout),
    ("/password", "GET", password_page),
    ("/password", "POST", change_password),
    ("/", "GET", home),
    ("/new", "GET", new_page),
    ("/check", "POST", check),
    ("/approvals", "GET", approvals),
    ("/history", "GET", history),
    ("/runs/{run_id}", "GET", run_views.run_page),
    ("/runs/{run_id}/progress", "GET", run_views.progress),
    ("/runs/{run_id}/start", "POST", run_views.restart),
    ("/runs/{run_id}/download/{kind}", "GET", download),
    ("/runs/{run_id}/submit", "POST", submit),
    ("/runs/{run_id}/withdraw", "POST", withdraw),
    ("/runs/{run_id}/approve", "POST", decide),
    ("/runs/{run_id}/reject", "POST", decide),
]
