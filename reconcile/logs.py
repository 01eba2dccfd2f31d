"""structlog set-up: console lines on a TTY, JSON lines otherwise; secrets never leave.

Every event passes through ``redact``: credential values registered by the run are replaced
wherever they appear, and any ``authorization`` field is masked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from reconcile.lazy import lazy

if TYPE_CHECKING:
    import structlog
else:
    structlog = lazy("structlog")

_SECRETS: set[str] = set()
_MASK = "[redacted]"


class _Deferred:
    """A structlog logger that imports structlog when first used: quick commands never do."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        return getattr(structlog.get_logger(self._name), method)


def get_logger(name: str) -> Any:
    """``structlog.get_logger(name)``, imported on first use."""
    return _Deferred(name)


def register_secret(value: str) -> None:
    """Remember a credential so that no log line can carry it."""
    if value:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _scrub_value(value: Any) -> Any:
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


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        event[key] = _MASK if key.lower() == "authorization" else _scrub_value(event[key])
    return event


def configure(*, verbose: bool = False, quiet: bool = False, json: bool | None = None) -> None:
    """Configure once, from the CLI. ``json`` defaults to 'stderr is not a terminal'."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: Any = (
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
