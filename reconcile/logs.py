"""structlog set-up: console lines on a TTY, JSON lines otherwise; secrets never leave.

Every event passes through ``redact``: credential values registered by the run are replaced
wherever they appear, and any ``authorization`` field is masked.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from reconcile.lazy import lazy

if TYPE_CHECKING:
    import structlog
    from structlog.typing import EventDict, Processor, WrappedLogger
else:
    structlog = lazy("structlog")

_SECRETS: set[str] = set()
_MASK = "[redacted]"


class DeferredLogger:
    """A structlog logger that imports structlog when first used: quick commands never do.
    Events are named, their data in fields (``log.info("run.started", run_id=...)``)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def debug(self, event: str, **fields: object) -> None:
        structlog.get_logger(self._name).debug(event, **fields)

    def info(self, event: str, **fields: object) -> None:
        structlog.get_logger(self._name).info(event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        structlog.get_logger(self._name).warning(event, **fields)

    def error(self, event: str, **fields: object) -> None:
        structlog.get_logger(self._name).error(event, **fields)

    def exception(self, event: str, **fields: object) -> None:
        """At error level, with the exception being handled."""
        structlog.get_logger(self._name).exception(event, **fields)


def get_logger(name: str) -> DeferredLogger:
    """``structlog.get_logger(name)``, imported on first use."""
    return DeferredLogger(name)


def register_secret(value: str) -> None:
    """Remember a credential so that no log line can carry it."""
    if value:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _scrub_value(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: _MASK if str(k).lower() == "authorization" else _scrub_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    return value


def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in list(event):
        event[key] = _MASK if key.lower() == "authorization" else _scrub_value(event[key])
    return event


def configure(*, verbose: bool = False, quiet: bool = False, json: bool | None = None) -> None:
    """Configure once, from the CLI. ``json`` defaults to 'stderr is not a terminal'."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr as it is when a logger is made, not when logging was configured (an
        # embedding program, or a test, may replace it later).
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
