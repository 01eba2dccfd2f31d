"""The console's HTTP errors its handlers raise (rendered by the app's error page)."""

from __future__ import annotations

from starlette.exceptions import HTTPException


class Forbidden(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(403, detail)


class NotFound(HTTPException):
    def __init__(self) -> None:
        super().__init__(404, "There is no such run, or it is not yours to see.")
