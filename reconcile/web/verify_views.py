"""The run page's read-back verification: "Verify now" (approvers and admins), its progress,
what the page shows of the latest verification, and the verify file's download."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from reconcile.verify_record import VerificationRecord, WrongRow, file_sha256
from reconcile.web.context import Forbidden, NotFound, Routes, Web
from reconcile.web.downloads import attachment
from reconcile.web.verifying import CannotVerify, Verifying, refusal

if TYPE_CHECKING:
    from reconcile.web.queue import BackgroundRun
    from reconcile.web.uploads import Upload
    from reconcile.web.users import User

#: The run page lists this many mismatching rows; the verify file has them all.
SHOWN_WRONG_ROWS = 100


class VerificationView(TypedDict):
    """What the run page's template reads of verifications."""

    verification: VerificationRecord | None
    """The latest one in the audit chain (any source)."""
    verification_wrong: list[WrongRow]
    verification_more: int
    """Mismatching rows the page leaves out (the verify file has them)."""
    verifying: Verifying | None
    """The one in progress, or stopped on an error."""
    may_verify: bool


def run_page_context(
    web: Web, upload: Upload, background: BackgroundRun | None, user: User
) -> VerificationView:
    """What the run page shows of verifications: the latest one (from the audit chain), the one
    in progress or stopped, and whether this user may start one now."""
    verifier = web.console.verifier
    latest = verifier.latest(upload, background)
    state = verifier.state(upload.run_id)
    wrong = list(latest.get("wrong", []))[:SHOWN_WRONG_ROWS] if latest else []
    return {
        "verification": latest,
        "verification_wrong": wrong,
        "verification_more": (latest.get("wrong_rows", 0) - len(wrong)) if latest else 0,
        "verifying": state,
        "may_verify": (
            user.can_approve
            and refusal(background) is None
            and (state is None or state.error is not None)
        ),
    }


async def verify_now(web: Web, request: Request) -> Response:
    session, _ = await web.posted(request)
    if not session.user.can_approve:
        raise Forbidden("Only approvers and administrators can verify a run.")
    upload = web.visible(session, request.path_params["run_id"])
    try:
        await anyio.to_thread.run_sync(web.console.verifier.start, upload, session.user)
    except CannotVerify as exc:
        raise HTTPException(409, str(exc)) from None
    return RedirectResponse(f"/runs/{upload.run_id}#verification-title", 303)


async def verify_state(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    upload = web.visible(session, request.path_params["run_id"])
    state = web.console.verifier.state(upload.run_id)
    running = state is not None and state.error is None
    return JSONResponse({"state": "running" if running else "not running"})


async def verify_download(web: Web, request: Request) -> Response:
    """The latest verification's file, as long as it is the file its audit record hashed."""
    session = web.signed_in(request)
    upload = web.visible(session, request.path_params["run_id"])
    background = web.console.background(upload.run_id)
    latest = web.console.verifier.latest(upload, background)
    if latest is None:
        raise NotFound
    path = Path(latest["verify_file"])
    same = path.is_file() and await anyio.to_thread.run_sync(file_sha256, path) == latest.get(
        "verify_sha256"
    )
    if not same:
        raise HTTPException(
            409, "The verify file has changed or gone since it was recorded: verify again."
        )
    web.audit(upload, session.user, "download", "verify.csv")
    name = upload.download_stem
    return attachment(path, f"{name}.verify.csv")


ROUTES: Routes = [
    ("/runs/{run_id}/verify", "POST", verify_now),
    ("/runs/{run_id}/verify/state", "GET", verify_state),
    ("/runs/{run_id}/verify/download", "GET", verify_download),
]
