"""The command line's commands and arguments; :mod:`reconcile.cli` runs them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconcile import __version__, verify_command
from reconcile.job import example_toml


def build_parser() -> argparse.ArgumentParser:
    """Every command and its arguments (cheap: nothing heavy is imported for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="reconcile", description="Apply a file of order corrections through an API."
    )
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_run(commands)
    _add_history(commands)

    commands.add_parser("operations", help="list the operations, their columns and rules")
    verify_command.add_parser(commands)

    _add_console(commands)

    sandbox = commands.add_parser("sandbox", help="serve the local sandbox API in the foreground")
    sandbox.add_argument("--seed", type=Path, help="seed JSON (default: the sample seed)")
    sandbox.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (default 8787)")
    sandbox.add_argument("--faults", type=Path, help="fault injection and rate limit (JSON)")
    sandbox.add_argument("--request-log", type=Path, help="append every request as a JSON line")
    return parser


def _add_run(commands: Any) -> None:
    """``reconcile run``: its arguments."""
    run = commands.add_parser(
        "run",
        help="validate a file and apply (or dry-run) it",
        epilog="job file settings (the README's job file explains them):\n" + example_toml(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "input",
        type=Path,
        nargs="?",
        help="CSV or .xlsx file of corrections (default: the job's input = file, glob or inbox)",
    )
    run.add_argument("--job", type=Path, required=True, help="job file (TOML)")
    run.add_argument("--out", type=Path, help="results CSV (default: out/<input>.results.csv)")
    run.add_argument("--dry-run", action="store_true", help="validate and show, send nothing")
    run.add_argument(
        "--verify",
        action="store_true",
        help="after the writes, read back every applied or unknown row (exit 4 on a mismatch)",
    )
    verify_command.add_sample_option(run)
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
    run.add_argument("--sheet", help="the workbook sheet to read (default: the first)")
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


def _add_console(commands: Any) -> None:
    """``reconcile serve`` and ``reconcile users``: the web console."""
    serve = commands.add_parser("serve", help="serve the web console (upload, check, approve)")
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
    users = commands.add_parser("users", help="add, list or disable console users")
    users.add_argument("action", choices=["add", "list", "disable"])
    users.add_argument("name", nargs="?", help="the user name (add, disable)")
    users.add_argument("--role", choices=["submitter", "approver", "viewer", "admin"])
    users.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    users.add_argument("--state-dir", type=Path, help="where the console keeps its users")
    users.add_argument("--job", type=Path, help="take state_dir from this job file")
    users.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )


def _add_history(commands: Any) -> None:
    """``runs``, ``approve``/``reject``, ``audit`` and ``ledger``: what the ledger holds."""
    runs = commands.add_parser("runs", help="list past runs, or show one (runs show ID)")
    runs.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    runs.add_argument("run_id", nargs="?", help="with show: the run id (a unique prefix will do)")
    runs.add_argument(
        "--state-dir", type=Path, help="where the ledger lives (default: user state dir)"
    )
    runs.add_argument("--job", type=Path, help="take state_dir from this job file")
    runs.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )
    runs.add_argument(
        "--requests", action="store_true", help="with show: every row's planned request too"
    )

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
        decide.add_argument("--state-dir", type=Path, help="where the ledger lives")
        decide.add_argument("--job", type=Path, help="take state_dir from this job file")
        decide.add_argument(
            "--ledger-url",
            help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)",
        )

    audit = commands.add_parser("audit", help="verify the audit chain, or export it for auditors")
    audit.add_argument("action", choices=["verify", "export"])
    audit.add_argument("--since", help="with export: runs from this date (YYYY-MM-DD)")
    audit.add_argument("--out", type=Path, help="with export: the CSV file to write")
    audit.add_argument(
        "--head",
        help="with verify: a head hash copied earlier (manifest, run summary, audit export): "
        "the chain must still contain it",
    )
    audit.add_argument("--state-dir", type=Path, help="where the ledger lives")
    audit.add_argument("--job", type=Path, help="take state_dir from this job file")
    audit.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )

    ledger = commands.add_parser("ledger", help="prepare a PostgreSQL ledger, or copy one into it")
    ledger.add_argument("action", choices=["migrate", "copy"])
    ledger.add_argument("--job", type=Path, help="the job (its ledger_url, or its SQLite ledger)")
    ledger.add_argument(
        "--ledger-url", help="PostgreSQL ledger URL (overrides ledger_url; or RECONCILE_LEDGER_URL)"
    )
    ledger.add_argument("--to", metavar="URL", help="with copy: the PostgreSQL ledger to fill")
