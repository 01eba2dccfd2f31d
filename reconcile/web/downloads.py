"""A run's downloads: the errors file, the planned requests, the results and the report.

An xlsx upload's errors and results come back as workbooks (a CSV upload's as CSV): Excel
opens a CSV's ``000456`` as the number 456, a workbook's text cell stays text. The workbook is
made from the very CSV the run wrote (formulas already neutralised there, as in every output)
and kept beside it.
"""

from __future__ import annotations

import io
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from reconcile import approval, atomic
from reconcile.results import neutralised, write_workbook_atomic
from reconcile.web.context import NotFound, Web
from reconcile.web.security import REPORT_CSP

if TYPE_CHECKING:
    from reconcile.web.uploads import Upload

#: What a run page offers to download; any other kind is 404 and never recorded.
DOWNLOADS = frozenset(
    {"errors.csv", "errors.xlsx", "requests.csv", "results.csv", "results.xlsx", "report"}
)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def download(web: Web, request: Request) -> Response:
    session = web.signed_in(request)
    upload = web.visible(session, request.path_params["run_id"])
    kind = request.path_params["kind"]
    if kind not in DOWNLOADS:
        raise NotFound
    name = upload.download_stem
    background = web.console.background(upload.run_id)
    finished = background is not None and background.state not in ("running", "queued")
    if (kind.startswith("results") or kind == "report") and not finished:
        raise NotFound
    web.audit(upload, session.user, "download", kind)
    if kind == "errors.csv":
        return attachment(upload.errors, f"{name}.errors.csv")
    if kind == "errors.xlsx":
        return attachment(
            _workbook(upload.errors, {"Errors": upload.errors}), f"{name}.errors.xlsx"
        )
    if kind == "requests.csv":
        return attachment(_planned_requests(web, upload), f"{name}.planned-requests.csv")
    assert background is not None
    if kind == "results.csv":
        return attachment(background.results, f"{name}.results.csv")
    if kind == "results.xlsx":
        errors = background.results.with_name(f"{background.results.stem}.errors.csv")
        sheets = {"Results": background.results, "Errors": errors}
        return attachment(_workbook(background.results, sheets), f"{name}.results.xlsx")
    if not background.report.exists():
        raise NotFound
    response = FileResponse(background.report, media_type="text/html")
    response.headers["content-security-policy"] = REPORT_CSP
    return response


def _workbook(source: Path, sheets: dict[str, Path]) -> Path:
    """``source`` (a CSV the run wrote) as a workbook beside it, one sheet per CSV, written
    once: every cell text as the CSV has it, but the spreadsheet row number a number."""
    path = source.with_suffix(".xlsx")
    if not path.exists():
        if not source.exists():
            raise NotFound
        frames = {sheet: _text_frame(csv) for sheet, csv in sheets.items() if csv.exists()}
        write_workbook_atomic(frames, path)
    return path


def _text_frame(path: Path) -> pl.DataFrame:
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    frame = frame.rename({c: c.lstrip("\ufeff") for c in frame.columns})
    if frame.width == 0:
        return frame
    first = frame.columns[0]  # the row number, ``row`` (or ``reconcile_row``)
    return frame.with_columns(pl.col(first).cast(pl.Int64, strict=False))


def attachment(path: Path, name: str) -> Response:
    """The file as a download named ``name``, whatever its script or quotes: Starlette writes
    RFC 6266's ``filename*`` (UTF-8, percent-encoded) for any name that needs it, and an ASCII
    ``filename`` goes before it for clients that do not read ``filename*``."""
    if not path.exists():
        raise NotFound
    # Characters no file system takes (Windows' reserved ones, quotes, controls) become '_'.
    name = re.sub(r'[\x00-\x1f\x7f"\\/:*?<>|]', "_", name)
    media = XLSX if name.endswith(".xlsx") else "text/csv"
    response = FileResponse(path, media_type=media, filename=name)
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
        atomic.write_bytes(path, b"\xef\xbb\xbf" + buffer.getvalue())
    return path
