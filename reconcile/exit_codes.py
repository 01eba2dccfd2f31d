"""The exit codes of ``reconcile``, with the one line each that the terminal, ``run --help``
and the README's table say about them."""

from __future__ import annotations

from reconcile import signals
from reconcile.exceptions import ReconcileError

OK = 0
ROWS_FAILED = 1
UNUSABLE = 2
CRASHED = 3
MISMATCH = 4
INTERRUPTED = 130
TERMINATED = 143
BROKEN_PIPE = 141
"""128 + SIGPIPE: the reader of our output went away (``reconcile operations | head``)."""

MEANINGS: dict[int, str] = {
    OK: "every row applied (dry run: would apply)",
    ROWS_FAILED: "some row did not apply (invalid, rejected, failed, unknown or skipped): "
    "see the errors file",
    UNUSABLE: "the input, the job file or the command line is unusable, a pre-flight check "
    "failed (an output or the state dir not writable, the ledger unreachable, a credential "
    "unset), or another run holds the lock: nothing was sent",
    CRASHED: "stopped on an unexpected error (its cause above): whatever was sent is in the "
    "ledger; a damaged ledger: reconcile ledger check",
    MISMATCH: "a read-back disagrees with the file (mismatch or not found)",
    INTERRUPTED: "interrupted (SIGINT): no new requests; results written if sending had begun",
    TERMINATED: "interrupted (SIGTERM, handled as SIGINT): no new requests; results written if "
    "sending had begun",
    BROKEN_PIPE: "the reader of the output went away",
}


def epilog() -> str:
    """The exit codes as ``run --help`` lists them."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in MEANINGS.items())


def meaning(code: int) -> str:
    """One line for the end of a run: ``exit 1: some row did not apply ...``."""
    return f"exit {code}: {MEANINGS.get(code, 'see the README exit-code table')}"


def for_exception(exc: BaseException) -> int:
    """The process's exit code when ``exc`` ends it, as :func:`reconcile.cli.main` maps it (a
    stopped run's records say the same: :func:`reconcile.run_record.stopped`)."""
    interrupted = signals.signal_of(exc)
    if interrupted is not None:
        return 128 + interrupted
    return UNUSABLE if isinstance(signals.leaf(exc), ReconcileError) else CRASHED
