"""The command line: parses arguments, calls the library, picks the exit code.

Exit codes: 0 every row applied (or would apply); 1 some row did not; 2 the input, the job file
or the command line is unusable, or another run holds the lock (nothing sent); 130/143 interrupted
by SIGINT/SIGTERM (results still written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from reconcile import __version__, logs
from reconcile.exceptions import ReconcileError
from reconcile.job import load_job

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_UNUSABLE = 2

log = structlog.get_logger("reconcile")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile", description="Apply a file of order corrections through an API."
    )
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="validate a file and apply (or dry-run) it")
    run.add_argument("input", type=Path, help="CSV file of corrections")
    run.add_argument("--job", type=Path, required=True, help="job file (TOML)")
    run.add_argument("--out", type=Path, help="results CSV (default: out/<input>.results.csv)")
    run.add_argument("--dry-run", action="store_true", help="validate and show, send nothing")
    run.add_argument("--operation", help="override the job's operation")
    run.add_argument("--base-url", help="override the job's base_url")
    run.add_argument("--rate", type=float, help="override rate_per_second (every community)")
    run.add_argument("--concurrency", type=int, help="override concurrency (every community)")
    run.add_argument("--quiet", action="store_true", help="warnings and errors only")
    run.add_argument("--verbose", action="store_true", help="debug events too")
    return parser


def default_out(input_path: Path) -> Path:
    return Path("out") / f"{input_path.stem}.results.csv"


def _run(args: argparse.Namespace) -> int:
    from reconcile import pipeline, report

    job = load_job(args.job).with_overrides(
        operation=args.operation,
        base_url=args.base_url.rstrip("/") if args.base_url else None,
        rate_per_second=args.rate,
        concurrency=args.concurrency,
    )
    out = args.out or default_out(args.input)
    result = pipeline.dry_run(args.input, job, out)
    report.print_summary(result.outcomes, out)
    return EXIT_OK if result.succeeded else EXIT_ROWS_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(verbose=getattr(args, "verbose", False), quiet=getattr(args, "quiet", False))
    try:
        if args.command == "run":
            return _run(args)
    except ReconcileError as exc:
        log.error("run.unusable", error=str(exc))
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
