"""A run's page: its check, its approval, its background run (queued, running, stopped,
finished) and its audit log; its live progress; and starting a stopped approved run again."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, TypedDict

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from reconcile import approval
from reconcile.audit import AuditStore
from reconcile.exceptions import ApprovalError
from reconcile.web import tables
from reconcile.web.context import Forbidden, Web
from reconcile.web.verify_views import run_page_context

if TYPE_CHECKING:
    from reconcile.web.uploads import Upload
    from reconcile.web.users import Session


class Queued(TypedDict):
    """Where a queued run stands, as the run page and its live progress show it."""

    behind: str | None
    """The console run it waits behind (None: a run outside the console holds the lock)."""
    link: bool
    """The user may see the run it waits behind (its page is linked)."""
    position: int
    """Its place in its job's line, from 1."""


class StartAgain(TypedDict):
    """Whether the user may start an approved plan's stopped run again, and until when."""

    may_restart: bool
    approval_expires: str | None


async def run_page(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    upload = web.visible(session, request.path_params["run_id"])
    job = web.console.job(upload.job)
    with approval.store(job.storage) as audit:
        plan = audit.plan(upload.run_id)
        rows = audit.plan_rows(upload.run_id)
        actions = audit.actions(upload.run_id)
        standing = audit.standing(upload.run_id)
        again = _start_again(web, session, upload, audit)
    withdrawn = standing[1] if standing and standing[0] == "withdrawal" else None
    counts = tables.status_counts(rows)
    decision = plan.decision if plan else None
    background = web.console.background(upload.run_id)
    user = session.user
    return web.page(
        request,
        "run.html",
        **run_page_context(web, upload, background, user),
        upload=upload,
        counts=counts,
        errors=tables.error_cells(upload.errors),
        changes=tables.planned_changes(
            upload.results,
            request.query_params.get("q", ""),
            _page_number(request.query_params.get("page", "1")),
        ),
        decision=decision,
        background=background,
        final_counts=tables.results_counts(background.results) if background else None,
        totals=tables.community_totals(rows),
        actions=actions,
        withdrawn=withdrawn,
        queued=_queued(web, session, upload.run_id),
        **again,
        may_withdraw=(
            user.name == upload.maker
            and upload.submitted_at is not None
            and decision is None
            and withdrawn is None
        ),
        may_submit=(
            user.name == upload.maker
            and user.can_submit
            and counts.get("would_apply", 0) > 0
            and upload.submitted_at is None
            and decision is None
        ),
        may_decide=(
            user.can_approve
            and user.name != upload.maker
            and upload.submitted_at is not None
            and decision is None
            and withdrawn is None
        ),
    )


def _page_number(text: str) -> int:
    return int(text) if text.isdigit() and 0 < len(text) < 7 else 1


async def progress(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    upload = web.visible(session, request.path_params["run_id"])
    background = web.console.background(upload.run_id)
    return JSONResponse(
        {
            "state": background.state if background else "not started",
            "communities": web.console.progress.of(upload.run_id),
            "queued": _queued(web, session, upload.run_id),
        }
    )


def _queued(web: Web, session: Session, plan_run_id: str) -> Queued | None:
    """Where a queued run stands: the run it waits behind (linked when the user may see it;
    None: a run outside the console) and its place in its job's line."""
    standing = web.console.queue.standing(plan_run_id)
    if standing is None:
        return None
    behind = standing.behind
    found = web.console.upload(behind) if behind else None
    shown = found is not None and (session.user.sees_all_runs or found.maker == session.user.name)
    return {"behind": behind, "link": shown, "position": standing.position}


def _start_again(web: Web, session: Session, upload: Upload, audit: AuditStore) -> StartAgain:
    """Whether this user may start the approved plan's run again (an approver, within the
    approval's lifetime, no finished application, not queued or running now), and until when."""
    plan = audit.plan(upload.run_id)
    decision = plan.decision if plan else None
    if plan is None or decision is None or decision["decision"] != "approved":
        return {"may_restart": False, "approval_expires": None}
    expires = approval.expires_at(plan, web.console.job(upload.job))
    allowed = (
        session.user.can_approve
        and dt.datetime.now(dt.UTC) < expires
        and approval.finished_application(audit, upload.run_id) is None
        and not web.console.queue.busy(upload.run_id)
    )
    return {"may_restart": allowed, "approval_expires": expires.isoformat(timespec="seconds")}


async def restart(web: Web, request: Request) -> Response:
    """An approver starts an approved plan's stopped run again (409 when the one-application
    check, the approval's lifetime or a run in progress refuses it: recorded, nothing sent)."""
    session, _ = await web.posted(request)
    if not session.user.can_approve:
        raise Forbidden("Only approvers can start an approved plan's run again.")
    upload = web.visible(session, request.path_params["run_id"])
    try:
        await anyio.to_thread.run_sync(web.console.restart, upload, session.user)
    except ApprovalError as exc:
        raise HTTPException(409, str(exc)) from None
    return RedirectResponse(f"/runs/{upload.run_id}", 303)
