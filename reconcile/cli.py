"""The command line: parses arguments, calls the library, picks the exit code.

Exit codes: 0 every row applied (or would apply); 1 some row did not; 2 the input, the job file
or the command line is unusable, or another run holds the lock (nothing sent); 3 stopped on an
unexpected error (a bug, a damaged ledger, a full disk: what was sent is in the ledger); 130/143
interrupted by SIGINT/SIGTERM (results still written when sending had begun).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile import exit_codes, logs, signals
from reconcile.cli_parser import build_parser
from reconcile.database import Storage, given_ledger_url, reading_only
from reconcile.exceptions import ConfigError, ReconcileError
from reconcile.job import default_state_dir, load_job
from reconcile.lazy import lazy

if TYPE_CHECKING:
    import polars as pl

    from reconcile.plan_store import RecordedPlan
else:
    pl = lazy("polars")


log = logs.get_logger("reconcile")


def _run(args: argparse.Namespace) -> int:
    """``reconcile run`` (its module loads polars and httpx: not on the start-up of the rest)."""
    from reconcile import run_command

    return run_command.main(args)


def _ledger_url(args: argparse.Namespace) -> str | None:
    """``--ledger-url``, else RECONCILE_LEDGER_URL (None: the job file's, or SQLite)."""
    return given_ledger_url(getattr(args, "ledger_url", None), os.environ)


def _storage(args: argparse.Namespace) -> Storage:
    """Where the ledger is: ``--state-dir`` / ``--ledger-url`` (or RECONCILE_LEDGER_URL), else
    the ``--job``'s, else the default state dir's SQLite ledger."""
    job = load_job(args.job) if args.job else None
    state_dir = Path(args.state_dir) if args.state_dir else None
    state_dir = state_dir or (job.state_dir if job else default_state_dir())
    return Storage(state_dir, _ledger_url(args) or (job.ledger_url if job else None))


def _decide(args: argparse.Namespace) -> int:
    """``approve`` / ``reject``: recorded in the audit chain; exit 2 when refused."""
    from reconcile import approval

    decide = approval.approve if args.command == "approve" else approval.reject
    record = decide(
        _storage(args), args.run_id, note=args.note, user=approval.acting_user(os.environ)
    )
    print(
        f"plan {record['run_id']} {record['decision']} by {record['decided_by']} at "
        f"{record['decided_at']} (plan SHA-256 {record['plan_sha256']})"
    )
    return exit_codes.OK


def _withdraw(args: argparse.Namespace) -> int:
    """``withdraw``: the maker takes a submitted plan back before a decision; exit 2 when
    refused (not theirs, never submitted, decided)."""
    from reconcile import approval

    record = approval.withdraw(
        _storage(args), args.run_id, user=approval.acting_user(os.environ), note=args.note
    )
    print(
        f"plan {record['run_id']} withdrawn by {record['by']} at {record['at']}: nobody can "
        "approve it now"
    )
    return exit_codes.OK


def _audit(args: argparse.Namespace) -> int:
    """``audit verify``: exit 1 naming the first record that does not match; ``audit export``."""
    from reconcile import approval

    state_dir = _storage(args)
    if args.action == "verify":
        problems = approval.verify(state_dir, args.head)
        for problem in problems:
            print(f"reconcile audit: {problem}", file=sys.stderr)
        if problems:
            return exit_codes.ROWS_FAILED
        extends = f", and it extends head {args.head}" if args.head else ""
        print(f"audit chain verified: {state_dir.shown}{extends}")
        print(f"audit chain head: {approval.chain_head(state_dir)}")
        return exit_codes.OK
    if not args.out or not args.since:
        raise ConfigError("audit export needs --since YYYY-MM-DD and --out FILE.csv (- for stdout)")
    try:
        since = dt.datetime.fromisoformat(args.since).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ConfigError(f"--since {args.since!r}: write a date as YYYY-MM-DD") from None
    to_stdout = str(args.out) == "-"
    written = approval.export(state_dir, since, None if to_stdout else args.out)
    told = sys.stderr if to_stdout else sys.stdout  # stdout is the CSV's alone
    print(f"{written} runs written to {'stdout' if to_stdout else args.out}", file=told)
    print(f"audit chain head: {approval.chain_head(state_dir)}", file=told)
    return exit_codes.OK


def _runs(args: argparse.Namespace) -> int:
    """``runs [list]``: the runs as a table (``--json``: a JSON object a line); ``runs show ID``:
    one run as text (``--json`` for machines), with its plan, decision and verifications."""
    from reconcile import run_history

    storage = _storage(args)
    if args.action == "show":
        return _show_run(args, storage)
    lines = run_history.history(storage)
    if args.json:
        for line in lines:
            print(json.dumps(line, default=str))
        return exit_codes.OK
    if not lines:
        print(
            f"no runs in {storage.shown} (try --job JOB for a job's ledger, or --state-dir DIR)",
            file=sys.stderr,
        )
        return exit_codes.OK
    print(run_history.table(lines))
    return exit_codes.OK


def _show_run(args: argparse.Namespace, storage: Storage) -> int:
    from reconcile import approval, run_history
    from reconcile.ledger import Ledger
    from reconcile.verify_record import print_verifications

    ledger = Ledger(storage)
    try:
        found = ledger.run(args.run_id)
    finally:
        ledger.close()
    if found is None:
        raise ConfigError(
            f"no single run matches {args.run_id!r} in {storage.shown}: give more of its id "
            "(reconcile runs lists them)"
        )
    with approval.store(storage) as audit:
        manifest: Mapping[str, object] = audit.manifest(found["run_id"]) or {}
        plan = audit.plan(found["run_id"])
        rows = audit.plan_rows(plan.run_id) if plan is not None else None
        verifications = audit.verifications(found["run_id"])
    if args.json:
        extra: dict[str, object] = {"verifications": verifications}
        if plan is not None:
            extra["plan"] = {
                "plan_sha256": plan.plan_sha256,
                "header": plan.header,
                "decision": plan.decision,
            }
        print(run_history.as_json(found, manifest, **extra))
        return exit_codes.OK
    print("\n".join(run_history.show_text(found, manifest)))
    if plan is not None and rows is not None:
        _print_plan(plan, rows, requests=args.requests)
    print_verifications(storage, found["run_id"])
    return exit_codes.OK


def _print_plan(plan: RecordedPlan, rows: pl.DataFrame, *, requests: bool) -> None:
    """The plan as text; every recorded value with its control characters escaped, so a line
    break in a note or a file name cannot print a line of its own (a forged decision)."""
    from reconcile.audit import escaped_text as e

    header = plan.header
    decision = plan.decision
    print(f"plan {plan.run_id}  SHA-256 {plan.plan_sha256}")
    print(f"  maker {e(str(header['maker']))} at {header['created_at']}")
    print(f"  input {e(str(header['input_name']))} (SHA-256 {header['input_sha256']})")
    print(f"  job fingerprint {header['job_fingerprint']}")
    if decision is None:
        print("  decision: waiting for approval")
    else:
        note = f": {e(str(decision['note']))}" if decision.get("note") else ""
        print(
            f"  decision: {decision['decision']} by {e(str(decision['decided_by']))} at "
            f"{decision['decided_at']}{note}"
        )
    counts = rows.group_by("status").len().sort("status").iter_rows()
    print("  rows: " + ", ".join(f"{status} {n}" for status, n in counts))
    if requests:
        for row, community, status, request, error in rows.iter_rows():
            where = e(str(community)) if community else "(no community)"
            print(f"  row {row} {where} {status}: {e(request or error or '')}")


def _operations() -> int:
    """Generated from the operation modules, so it cannot drift from what is validated."""
    from reconcile.operations import OPERATIONS

    for operation in OPERATIONS.values():
        print(f"{operation.name}: {operation.summary}")
        print(
            f"  credentials per community: {', '.join(c + '_env' for c in operation.credentials)}"
        )
        for column in operation.columns:
            print(
                f"  {column.name:<24} {'required' if column.required else 'optional':<9} {column.rule}"
            )
        for family in operation.families:
            key = f"{family}.<key>"
            print(
                f"  {key:<24} {'optional':<9} each becomes a key of {family}; empty = not "
                "sent; a type after a colon (metadata.floor:number; text, number, integer, "
                "boolean, json) sends that JSON type"
            )
        print()
    return exit_codes.OK


def _sandbox(args: argparse.Namespace) -> int:
    from reconcile.sandbox import Faults, SandboxState, load_seed, serve_forever
    from reconcile.sandbox.state import DEFAULT_SEED

    faults = Faults.from_dict(json.loads(args.faults.read_text())) if args.faults else Faults()
    state = SandboxState(load_seed(args.seed or DEFAULT_SEED), faults)
    state.log_path = args.request_log
    print(f"reconcile sandbox on http://127.0.0.1:{args.port} (Ctrl-C stops)", file=sys.stderr)
    serve_forever(state, args.port)
    return exit_codes.OK


def _ledger(args: argparse.Namespace) -> int:
    """``ledger migrate`` (create or upgrade a PostgreSQL ledger's schema), ``ledger copy``
    (a job's SQLite ledger into a PostgreSQL one) and ``ledger check`` (exit 3: damaged)."""
    from reconcile import ledger_commands

    if args.action == "migrate":
        url = _ledger_url(args) or (load_job(args.job).ledger_url if args.job else None)
        if not url:
            raise ConfigError("ledger migrate needs --ledger-url URL, or --job with ledger_url")
        print(ledger_commands.migrate_url(url))
        return exit_codes.OK
    if args.action == "check":
        from reconcile import ledger_check

        checked = ledger_check.check(_storage(args))
        print("\n".join(checked.lines))
        return exit_codes.OK if checked.sound else exit_codes.CRASHED
    if not args.job or not args.to:
        raise ConfigError("ledger copy needs --job JOB (its SQLite ledger) and --to URL")
    print(ledger_commands.copy(Storage(load_job(args.job).state_dir), args.to))
    return exit_codes.OK


def _verify(args: argparse.Namespace) -> int:
    from reconcile import verify_command

    return verify_command.main(args)


def _web(args: argparse.Namespace) -> int:
    from reconcile.web import commands

    return commands.serve(args) if args.command == "serve" else commands.users(args)


def _only_reads(args: argparse.Namespace) -> bool:
    """``runs``, ``audit verify``, ``audit export --out -``: they work on a full disk."""
    if args.command == "runs":
        return True
    return args.command == "audit" and (args.action == "verify" or str(args.out) == "-")


#: Each command's handler (the parser in cli_parser.py names the same commands).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "sandbox": _sandbox,
    "runs": _runs,
    "operations": lambda _: _operations(),
    "approve": _decide,
    "reject": _decide,
    "withdraw": _withdraw,
    "audit": _audit,
    "ledger": _ledger,
    "verify": _verify,
    "serve": _web,
    "users": _web,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Listing commands log nothing on success: they start without structlog.
    quick = args.command in ("operations", "runs", "users")
    if not quick:
        logs.configure(verbose=getattr(args, "verbose", False), quiet=getattr(args, "quiet", False))
    if args.command in ("run", "verify"):
        signals.terminate_as_interrupt()  # SIGTERM at any moment: as Ctrl-C, logged and recorded
    try:
        with reading_only() if _only_reads(args) else contextlib.nullcontext():
            return COMMANDS[args.command](args)
    except ReconcileError as exc:
        if quick:
            logs.configure()
        log.error("run.unusable", error=str(exc))
        print(f"reconcile: {exc}", file=sys.stderr)
        return exit_codes.UNUSABLE
    except BrokenPipeError:
        # The reader is gone: end quietly, as Unix tools do. Output still buffered for the
        # closed pipe would fail again at exit, so stdout is pointed at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exit_codes.BROKEN_PIPE
    except KeyboardInterrupt as exc:
        # Outside the sending phase (which handles signals itself): nothing was being sent.
        received = signals.signal_of(exc) or signal.SIGINT
        log.warning("run.interrupted", signal=received.name, phase="reading, checking or writing")
        return exit_codes.for_exception(exc)
    except Exception as exc:
        # A code of its own (a bug, a full disk, a damaged ledger or one gone away), so that
        # monitoring tells it from rows that failed; the message names the cause.
        from reconcile import crash

        crash.explain(exc)
        return exit_codes.CRASHED


if __name__ == "__main__":
    sys.exit(main())
