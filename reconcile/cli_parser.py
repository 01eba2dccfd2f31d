"""The command line's commands and arguments; :mod:`reconcile.cli` runs them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from reconcile import exit_codes
from reconcile.job import example_toml
from reconcile.version import __version__

# argparse names the type of ``add_subparsers()``'s result only privately.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    """Every command and its arguments (cheap: nothing heavy is imported for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="reconcile", description="Apply a file of order corrections through an API."
    )
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_run(commands)
    _add_runs(commands)
    _add_decisions(commands)
    _add_audit(commands)
    _add_ledger(commands)

    commands.add_parser("operations", help="list the operations, their columns and rules")
    _add_verify(commands)

    _add_console(commands)
    _add_users(commands)

    sandbox = commands.add_parser("sandbox", help="serve the local sandbox API in the foreground")
    sandbox.add_argument("--seed", type=Path, help="seed JSON (default: the sample seed)")
    sandbox.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (default 8787)")
    sandbox.add_argument("--faults", type=Path, help="fault injection and rate limit (JSON)")
    sandbox.add_argument("--request-log", type=Path, help="append every request as a JSON line")
    return parser


VERIFY_DESCRIPTION = """\
Read back an earlier run's rows (applied, already applied or unknown) or a file's rows (no run
at all), and write the input's columns plus verify_status and verify_detail. Never writes to
the API or the ledger.

Exit codes: 0 every row verified, confirmed or unverifiable; 4 any mismatch or not found; 1 reads
failed; 2 unusable input or job (as run)."""


def _add_verify(commands: Commands) -> None:
    """``reconcile verify`` (:mod:`reconcile.verify_command`): its arguments."""
    verify = commands.add_parser(
        "verify",
        help="read back what a run (or a file) wrote and compare, field by field",
        description=VERIFY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("target", help="a run id (from `reconcile runs`) or a CSV/.xlsx file")
    verify.add_argument("--job", type=Path, required=True, help="job file (TOML)")
    verify.add_argument("--out", type=Path, help="verify CSV (default: out/<input>.verify.csv)")
    _add_sample_option(verify)


def _add_sample_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify-sample",
        type=_percent,
        metavar="N",
        help="read back a random N%% of the records (1-100; unknown rows are always read)",
    )


def _percent(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not a percentage in (0, 100]")
    return value


def _add_run(commands: Commands) -> None:
    """``reconcile run``: its arguments."""
    run = commands.add_parser(
        "run",
        help="validate a file and apply (or dry-run) it",
        epilog=exit_codes.epilog()
        + "\n\njob file settings (the README's job file explains them):\n"
        + example_toml(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "input",
        type=Path,
        nargs="?",
        help="file of corrections: a CSV, tab text or Excel workbook "
        "(default: the job's input = file, glob or inbox)",
    )
    run.add_argument("--job", type=Path, required=True, help="job file (TOML)")
    run.add_argument("--out", type=Path, help="results CSV (default: out/<input>.results.csv)")
    run.add_argument("--dry-run", action="store_true", help="validate and show, send nothing")
    run.add_argument(
        "--verify",
        action="store_true",
        help="after the writes, read back every applied or unknown row (exit 4 on a mismatch)",
    )
    _add_sample_option(run)
    run.add_argument("--operation", help="override the job's operation")
    run.add_argument("--base-url", help="override the job's base_url")
    run.add_argument("--rate", type=float, help="override rate_per_second (every community)")
    run.add_argument("--concurrency", type=int, help="override concurrency (every community)")
    run.add_argument(
        "--sandbox",
        action="store_true",
        help="start the local sandbox API (sample seed) and run against it over real HTTP",
    )
    run.add_argument(
        "--force", action="store_true", help="re-send what the ledger says is applied or unknown"
    )
    run.add_argument("--state-dir", type=Path, help="where the ledger lives (overrides state_dir)")
    run.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )
    run.add_argument(
        "--community",
        action="append",
        metavar="NAME",
        help="only this community's rows (repeatable); the others are skipped",
    )
    run.add_argument(
        "--sheet",
        help="the workbook sheet to read, case-insensitive (default: the first with a header row)",
    )
    run.add_argument(
        "--plan",
        metavar="RUN_ID",
        help="apply this approved dry run's plan (the input named in it, or --input)",
    )
    run.add_argument(
        "--input", type=Path, dest="plan_input", help="with --plan: the input file's new path"
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="when another run holds the lock, queue until it frees instead of exiting 2",
    )
    run.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="with --wait: give up (exit 2, nothing sent) after this long (default 3600; a "
        "plan's run never waits past its approval's expiry)",
    )
    run.add_argument("--quiet", action="store_true", help="warnings and errors only")
    run.add_argument("--verbose", action="store_true", help="debug events too")


def _store_options(parser: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """Where the ledger is: the options every command that reads or writes it takes.

    ``inherited``: the command above takes them too (``runs --job J show ID``), so the action's
    own default must not overwrite what was given before its name."""
    default = argparse.SUPPRESS if inherited else None
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default,
        help="where the ledger lives (overrides the job's)",
    )
    parser.add_argument(
        "--job", type=Path, default=default, help="take state_dir / ledger_url from this job file"
    )
    parser.add_argument(
        "--ledger-url",
        default=default,
        help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)",
    )


def _actions(parent: argparse.ArgumentParser, *, required: bool = True) -> Commands:
    """Sub-commands of a command (``runs show``, ``audit verify``), each with its own --help."""
    return parent.add_subparsers(dest="action", required=required, metavar="ACTION")


def _add_console(commands: Commands) -> None:
    """``reconcile serve``: the web console."""
    serve = commands.add_parser(
        "serve",
        help="serve the web console (upload, check, approve)",
        description="Serve the web console: upload a file, see its bad cells, submit it for "
        "a colleague's approval, apply it.",
    )
    serve.add_argument(
        "--job", type=Path, action="append", help="a job the console offers (repeatable)"
    )
    serve.add_argument("--state-dir", type=Path, help="users, sessions and the ledger")
    serve.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20)"
    )
    serve.add_argument(
        "--trust-user-header",
        metavar="HEADER",
        help="a reverse proxy's SSO header naming the signed-in user (with --trusted-proxy)",
    )
    serve.add_argument(
        "--trusted-proxy", metavar="ADDR", help="the only address the user header is believed from"
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="the built-in sandbox and two demo users (one-time passwords printed)",
    )


#: What each console role may do (``users add --role``).
ROLES = {
    "submitter": "uploads and checks files, submits plans for approval",
    "approver": "approves or rejects other people's plans, applies them, verifies runs",
    "viewer": "reads runs, reports and the audit log; changes nothing",
    "admin": "everything an approver does, and manages users",
}


def _add_users(commands: Commands) -> None:
    """``reconcile users add|list|disable``: the console's users."""
    users = commands.add_parser("users", help="add, list or disable console users")
    actions = _actions(users)
    add = actions.add_parser(
        "add",
        help="add a user (the password is read from standard input)",
        description="Add a console user. The password comes from standard input, never an "
        "argument (it would be in the shell history and the process list).",
        epilog="roles:\n" + "\n".join(f"  {r:<10} {t}" for r, t in ROLES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", help="the user name (letters, digits, . _ -)")
    add.add_argument(
        "--role",
        choices=list(ROLES),
        required=True,
        help="what the user may do: " + "; ".join(f"{r}: {t}" for r, t in ROLES.items()),
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    text = "list the users, their roles and state"
    listing = actions.add_parser("list", help=text, description=text)
    text = "disable a user and end their sessions (their records stay)"
    disable = actions.add_parser("disable", help=text, description=text)
    disable.add_argument("name", help="the user name")
    for parser in (add, listing, disable):
        _store_options(parser)


def _add_runs(commands: Commands) -> None:
    """``reconcile runs [list]`` and ``reconcile runs show ID``: what the ledger holds."""
    runs = commands.add_parser(
        "runs",
        help="list past runs (a table), or show one (runs show ID)",
        description="List past runs of a ledger, newest first, or show one run.",
    )
    _store_options(runs)
    actions = _actions(runs, required=False)
    listing = actions.add_parser(
        "list", help="the runs as a table (the default)", description="The runs as a table."
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser(
        "show",
        help="one run: counts, plan, decision, verifications",
        description="One run as readable text: counts, plan and decision, verifications.",
    )
    show.add_argument("run_id", help="the run id (a unique prefix will do)")
    show.add_argument("--requests", action="store_true", help="every row's planned request too")
    show.add_argument("--json", action="store_true", help="the run as JSON, for machines")
    for parser in (listing, show):
        _store_options(parser, inherited=True)
    runs.set_defaults(action="list", json=False, requests=False)


def _add_decisions(commands: Commands) -> None:
    """``approve`` / ``reject`` / ``withdraw``: the maker-checker decisions."""
    for name, text in (
        ("approve", "approve a dry run's plan (maker-checker)"),
        ("reject", "reject a dry run's plan (maker-checker)"),
        ("withdraw", "take your own submitted plan back before anyone decides it"),
    ):
        decide = commands.add_parser(name, help=text, description=text)
        decide.add_argument("run_id", help="the dry run's id")
        decide.add_argument(
            "--note", required=name == "reject", help="why (required to reject; optional else)"
        )
        _store_options(decide)


def _add_audit(commands: Commands) -> None:
    """``reconcile audit verify|export``: the audit chain."""
    audit = commands.add_parser("audit", help="verify the audit chain, or export it for auditors")
    actions = _actions(audit)
    verify = actions.add_parser(
        "verify",
        help="recompute every record's hash; exit 1 naming the first that does not match",
        description="Recompute the audit chain's hashes (exit 1 naming the first record that "
        "does not match) and print its head.",
    )
    verify.add_argument(
        "--head",
        help="a head hash copied earlier (manifest, run summary, audit export): the chain "
        "must still contain it",
    )
    export = actions.add_parser(
        "export",
        help="write the runs since a date as a CSV for auditors",
        description="Write every run since a date (maker, approver, hashes, counts) as a CSV.",
    )
    export.add_argument("--since", required=True, help="runs from this date (YYYY-MM-DD)")
    export.add_argument(
        "--out", type=Path, required=True, help="the CSV file to write (- for stdout)"
    )
    for parser in (verify, export):
        _store_options(parser)
        parser.set_defaults(head=None, since=None, out=None)


def _add_ledger(commands: Commands) -> None:
    """``reconcile ledger migrate|copy|check``: a PostgreSQL ledger's schema and contents, and
    whether a ledger is sound."""
    ledger = commands.add_parser(
        "ledger",
        help="prepare a PostgreSQL ledger, copy one into it, or check it (exit 3: damaged)",
    )
    actions = _actions(ledger)
    migrate = actions.add_parser(
        "migrate",
        help="create or upgrade a PostgreSQL ledger's schema (idempotent)",
        description="Create or upgrade a PostgreSQL ledger's schema; running it again is safe.",
    )
    migrate.add_argument("--job", type=Path, help="the job whose ledger_url to migrate")
    migrate.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )
    copy = actions.add_parser(
        "copy",
        help="copy a job's SQLite ledger into a PostgreSQL ledger",
        description="Copy a job's SQLite ledger (runs, outcomes, audit chain) into PostgreSQL.",
    )
    copy.add_argument("--job", type=Path, required=True, help="the job whose SQLite ledger to copy")
    copy.add_argument("--to", metavar="URL", required=True, help="the PostgreSQL ledger to fill")
    copy.set_defaults(ledger_url=None)
    check = actions.add_parser(
        "check",
        help="is the ledger sound? (SQLite integrity check, PostgreSQL amcheck or a full read)",
        description="Check the ledger (SQLite: PRAGMA integrity_check; PostgreSQL: amcheck on "
        "every index when installed, and every row read): exit 0 sound, 3 damaged (with what "
        "to do), 2 no ledger there or it cannot be reached.",
    )
    _store_options(check)
    check.set_defaults(to=None)
