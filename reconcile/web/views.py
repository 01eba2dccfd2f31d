"""The console's pages and actions: one handler per route, each checking the role first."""

from __future__ import annotations

import io
import os
import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from reconcile import approval
from reconcile.exceptions import ApprovalError, PlanStateError, ReconcileError
from reconcile.results import neutralised
from reconcile.web import run_views, tables
from reconcile.web.errors import Forbidden, NotFound
from reconcile.web.security import LOGIN_CSRF_COOKIE, REPORT_CSP, SESSION_COOKIE, same_token
from reconcile.web.users import LOCKOUT_MINUTES, SESSION_HOURS, SignInThrottled

if TYPE_CHECKING:
    from reconcile.web.app import Web
    from reconcile.web.console import Upload


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
        error = str(exc)[:1].upper() + str(exc)[1:] + "."
        return web.page(request, "password.html", 400, forced=forced, error=error)
    token = web.signer.read(request.cookies.get(SESSION_COOKIE)) or ""
    web.users.end_other_sessions(session.user.name, token)
    with approval.store(web.console.storage) as audit:
        audit.record_action("", session.user.name, "password-change", f"from {_client(request)}")
    return RedirectResponse("/", 303)


async def home(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    return RedirectResponse("/new" if session.user.can_submit else "/history", 303)


# -- upload and check ------------------------------------------------------------------------


async def new_page(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    if not session.user.can_submit:
        raise Forbidden("Your role can read history and runs, not upload files.")
    return web.page(request, "new.html", jobs=sorted(web.console.jobs), error=None)


async def check(web: Web, request: Request) -> Response:
    session, form = await web.posted(request)
    if not session.user.can_submit:
        raise Forbidden("Your role can read history and runs, not upload files.")
    upload = form.get("file")
    job = str(form.get("job") or "")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _new_with_error(web, request, "Choose a file to check (CSV or xlsx).")
    data = await upload.read()
    if not data:
        return _new_with_error(web, request, f"{upload.filename!r} is empty.")
    try:
        checked = await anyio.to_thread.run_sync(
            web.console.check, job, _sent_name(upload.filename), data, session.user
        )
    except ReconcileError as exc:
        return _new_with_error(web, request, str(exc))
    return RedirectResponse(f"/runs/{checked.run_id}", 303)


def _sent_name(filename: str) -> str:
    """The file name as the user's system has it: browsers (WHATWG's multipart form encoding)
    send a quote in a file name as ``%22``, which the form parser leaves as it is."""
    return filename.replace("%22", '"')


def _new_with_error(web: Web, request: Request, message: str) -> Response:
    jobs = sorted(web.console.jobs)
    return web.page(request, "new.html", 400, jobs=jobs, error=message)


#: What a run page offers to download; any other kind is 404 and never recorded.
DOWNLOADS = frozenset({"errors.csv", "requests.csv", "results.csv", "report"})


async def download(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    upload = web.visible(session, request.path_params["run_id"])
    kind = request.path_params["kind"]
    if kind not in DOWNLOADS:
        raise NotFound
    name = Path(upload.original_name.replace("\\", "/")).stem or "corrections"
    background = web.console.background(upload.run_id)
    busy = background is None or background.state in ("running", "queued")
    if kind in ("results.csv", "report") and busy:
        raise NotFound
    web.audit(upload, session.user, "download", kind)
    if kind == "errors.csv":
        return attachment(upload.errors, f"{name}.errors.csv")
    if kind == "requests.csv":
        return attachment(_planned_requests(web, upload), f"{name}.planned-requests.csv")
    assert background is not None
    if kind == "results.csv":
        return attachment(background.results, f"{name}.results.csv")
    if not background.report.exists():
        raise NotFound
    response = FileResponse(background.report, media_type="text/html")
    response.headers["content-security-policy"] = REPORT_CSP
    return response


def attachment(path: Path, name: str) -> Response:
    """The file as a download named ``name``, whatever its script or quotes: Starlette writes
    RFC 6266's ``filename*`` (UTF-8, percent-encoded) for any name that needs it, and an ASCII
    ``filename`` goes before it for clients that do not read ``filename*``."""
    if not path.exists():
        raise NotFound
    # Characters no file system takes (Windows' reserved ones, quotes, controls) become '_'.
    name = re.sub(r'[\x00-\x1f\x7f"\\/:*?<>|]', "_", name)
    response = FileResponse(path, media_type="text/csv", filename=name)
    written = response.headers["content-disposition"]
    if "filename*=" in written:
        response.headers["content-disposition"] = written.replace(
            "attachment;", f'attachment; filename="{ascii_filename(name)}";', 1
        )
    return response


def ascii_filename(name: str) -> str:
    """``name`` in printable ASCII with no quote, backslash or separator: accents dropped,
    other characters '_', the suffix kept (``Ελλάδα.csv`` -> ``______.csv``; ``é`` -> ``e``)."""
    kept = "".join(
        c if c.isascii() and (c.isalnum() or c in "._ -") else "_"
        for c in unicodedata.normalize("NFKD", name)
        if not unicodedata.combining(c)
    )
    return kept.strip(" ") or "download.csv"


def _planned_requests(web: Web, upload: Upload) -> Path:
    """The plan's rows as CSV (written once beside the upload): exactly the requests a run of
    this plan would send (or why not)."""
    path = upload.stored.with_name(f"{upload.stored.stem}.planned-requests.csv")
    if not path.exists():
        with approval.store(web.console.job(upload.job).storage) as audit:
            rows = audit.plan_rows(upload.run_id)
        buffer = io.BytesIO()
        neutralised(rows.lazy()).collect().write_csv(buffer)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue())
        os.replace(tmp, path)
    return path


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
    runs = await anyio.to_thread.run_sync(web.console.history)
    uploads = {u.run_id: u for u in web.console.uploads()}
    if not session.user.sees_all_runs:
        runs = [r for r in runs if r.get("maker") == session.user.name]
    return web.page(request, "history.html", runs=runs, uploads=uploads)


Handler = Callable[["Web", Request], Awaitable[Response]]

ROUTES: list[tuple[str, str, Handler]] = [
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
