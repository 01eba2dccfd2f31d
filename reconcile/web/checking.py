"""The New correction form and its check: the job and sheet kept after an error, a
workbook's sheets offered before it is checked, and the job a file fits better named."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from reconcile.exceptions import ReconcileError
from reconcile.table import WORKBOOK_SUFFIXES
from reconcile.web.context import Forbidden, Web
from reconcile.web.fitting import first_fitting_sheet, jobs_it_fits, sheet_names, suffix_of

if TYPE_CHECKING:
    from reconcile.web.users import User


@dataclasses.dataclass(frozen=True, slots=True)
class Form:
    """What the form shows again: the chosen job, a held workbook and its sheets."""

    job: str = ""
    held: str = ""
    held_name: str = ""
    sheets: tuple[str, ...] = ()
    sheet: str | None = None


async def new_page(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    if not session.user.can_submit:
        raise Forbidden("Your role can read history and runs, not upload files.")
    return _form(web, request, Form(job=request.query_params.get("job", "")))


def _form(
    web: Web,
    request: Request,
    form: Form,
    status: int = 200,
    *,
    error: str | None = None,
    hint: str | None = None,
    notice: str | None = None,
) -> Response:
    return web.page(
        request,
        "new.html",
        status,
        jobs=sorted(web.console.jobs),
        form=form,
        error=error,
        hint=hint,
        notice=notice,
    )


async def check(web: Web, request: Request) -> Response:
    session, posted = await web.posted(request)
    if not session.user.can_submit:
        raise Forbidden("Your role can read history and runs, not upload files.")
    job = str(posted.get("job") or "")
    sheet = str(posted.get("sheet") or "") or None
    chosen = Form(job=job)
    found = await _the_file(web, session.user, posted)
    if isinstance(found, str):
        return _form(web, request, chosen, 400, error=found)
    token, name, path = found
    names: list[str] = []
    if suffix_of(name) in WORKBOOK_SUFFIXES:
        names = await anyio.to_thread.run_sync(sheet_names, path)
    held = Form(job, token, name, tuple(names), sheet) if len(names) > 1 else chosen
    if len(names) > 1 and (sheet is None or sheet not in names):
        best = await anyio.to_thread.run_sync(_first_sheet, web, job, path, names)
        notice = f"{name!r} has {len(names)} sheets: choose the one to check."
        return _form(web, request, dataclasses.replace(held, sheet=best), notice=notice)
    try:
        checked = await anyio.to_thread.run_sync(
            web.console.check, job, name, path.read_bytes(), session.user, sheet
        )
    except ReconcileError as exc:
        fits = await anyio.to_thread.run_sync(jobs_it_fits, path, web.console.jobs, job, sheet)
        if not held.held:
            web.console.held.drop(token, name)
        return _form(web, request, held, 400, error=str(exc), hint=_looks_like(fits))
    web.console.held.drop(token, name)
    return RedirectResponse(f"/runs/{checked.run_id}", 303)


async def _the_file(web: Web, user: User, posted: FormData) -> tuple[str, str, Path] | str:
    """The upload (held until it is checked) as (token, name, path), or what is wrong: a new
    file wins over a held workbook."""
    upload = posted.get("file")
    held = web.console.held
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read()
        if not data:
            return f"{upload.filename!r} is empty."
        name = _sent_name(upload.filename)
        token = held.hold(name, data, user.name)
    else:
        token = str(posted.get("held") or "")
        if not token:
            return "Choose a file to check (CSV or xlsx)."
        found = held.path(token, user.name)
        if found is None:
            return "That workbook is no longer waiting for its sheet: choose the file again."
    found = held.path(token, user.name)
    assert found is not None
    return token, found[0], found[1]


def _first_sheet(web: Web, job: str, path: Path, names: list[str]) -> str | None:
    if job not in web.console.jobs:
        return names[0] if names else None
    return first_fitting_sheet(path, web.console.jobs[job], names)


def _looks_like(jobs: list[str]) -> str | None:
    if not jobs:
        return None
    named = " or ".join(f"a {name}" for name in jobs)
    return (
        f"This file looks like {named} file: its columns fit "
        f"{'that job' if len(jobs) == 1 else 'those jobs'}. Choose it under Job and check again."
    )


def _sent_name(filename: str) -> str:
    """The file name as the user's system has it: browsers (WHATWG's multipart form encoding)
    send a quote in a file name as ``%22``, which the form parser leaves as it is."""
    return filename.replace("%22", '"')
