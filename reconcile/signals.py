"""SIGTERM handled as SIGINT is, at any moment of a run.

Python turns SIGINT into KeyboardInterrupt; SIGTERM's default kills the process on the spot (no
log line, the run left unrecorded). :func:`terminate_as_interrupt` makes SIGTERM raise
:class:`Terminated`, a KeyboardInterrupt, so that every ``except KeyboardInterrupt`` and
``finally`` runs for both. The sending phase watches both signals itself
(:mod:`reconcile.sending`); the event loop puts the default back when it ends, so the handler
is installed again after it (:func:`restore`).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_installed = False


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived outside the sending phase."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        _installed = True


def restore() -> None:
    """After an event loop that handled the signals itself: SIGTERM raises again."""
    if _installed:
        terminate_as_interrupt()


def leaf(exc: BaseException) -> BaseException:
    """The error inside task-group wrappers (an ExceptionGroup's first, recursively)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def signal_of(exc: BaseException) -> signal.Signals | None:
    """The signal a KeyboardInterrupt stands for (None: not an interrupt)."""
    exc = leaf(exc)
    if isinstance(exc, Terminated):
        return signal.SIGTERM
    return signal.SIGINT if isinstance(exc, KeyboardInterrupt) else None
