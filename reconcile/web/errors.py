"""The console's refusals, shown on the error page with their reason."""

from __future__ import annotations

from starlette.exceptions import HTTPException


class Forbidden(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(403, detail)


class NotFound(HTTPException):
    def __init__(self) -> None:
        super().__init__(404, "There is no such run, or it is not yours to see.")
