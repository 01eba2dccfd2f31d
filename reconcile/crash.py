"""What exit 3 says: the cause (the exception's message and the path it concerns) and, honestly,
whether the same command resumes.

- The ledger database went away (:class:`LedgerUnavailable`): nothing left unrecorded; the same
  command resumes when it is back.
- The SQLite ledger is damaged (:class:`LedgerDamaged`): a re-run does **not** resume (the
  ledger is what tells it what was sent); ``reconcile ledger check`` says what to do.
- Anything else (a full disk, a bug): every request was recorded before it left, so once the
  cause is fixed the same command resumes; applied requests are not sent again, those in flight
  at the error are re-sent when repeatable, else reported ``unknown``.
"""

from __future__ import annotations

import errno
import sys
from typing import TypeVar

from reconcile import logs
from reconcile.database import LedgerDamaged, LedgerUnavailable

E = TypeVar("E", bound=BaseException)
log = logs.get_logger("reconcile")

RESUMES = (
    "Every request was recorded in the ledger before it left: once the cause is fixed, the "
    "same command resumes (applied requests are not sent again; one in flight at the error is "
    "re-sent if repeatable, else reported unknown, never re-sent blindly)."
)


def found_in(exc: BaseException, kind: type[E]) -> E | None:
    """The error of ``kind`` inside ``exc`` (itself, its cause, context or exception group)."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop()
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        seen.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if len(seen) > 100:
            break
    return None


def cause_of(exc: BaseException) -> str:
    """The exception's message with the path it concerns (an OSError's file, a ledger's note)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"the disk is full{where} ({exc.strerror})"
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    notes = "; ".join(getattr(exc, "__notes__", []))
    return f"{type(exc).__name__}: {text}" + (f" ({notes})" if notes else "")


def explain(exc: Exception) -> None:
    """Log and print why the run stopped with exit 3, and what a re-run will do."""
    lost = found_in(exc, LedgerUnavailable)
    if lost is not None:
        log.error("run.ledger_unavailable", error=str(lost))
        _say(
            f"{lost}. The run stopped sending at once: every request that went out was "
            "recorded first. Run the same command again when the database is back to resume "
            "(nothing applied is sent twice)."
        )
        return
    damaged = found_in(exc, LedgerDamaged)
    if damaged is not None:
        log.error("run.ledger_damaged", ledger=damaged.path, error=damaged.detail)
        _say(
            f"{damaged}. A re-run will NOT resume until the ledger is repaired or restored: "
            "the ledger is what tells it which requests were already sent. Run 'reconcile "
            "ledger check' with the same --job (or --state-dir) for what it found and what "
            "to do; send nothing for this job meanwhile."
        )
        return
    log.exception("run.crashed", cause=cause_of(exc))
    _say(f"stopped on an unexpected error: {cause_of(exc)} (logged as run.crashed). {RESUMES}")


def _say(text: str) -> None:
    print(f"reconcile: {text}", file=sys.stderr)
