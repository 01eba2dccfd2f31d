"""The command line: parses arguments, calls the library, picks the exit code.

Exit codes: 0 every row applied (or would apply); 1 some row did not; 2 the input, the job file
or the command line is unusable, or another run holds the lock (nothing sent); 130/143 interrupted
by SIGINT/SIGTERM (results still written).
"""

from __future__ import annotations

import argparse
import json
import os
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
    run.add_argument(
        "--sandbox",
        action="store_true",
        help="start the local sandbox API (sample seed) and run against it over real HTTP",
    )
    run.add_argument(
        "--force", action="store_true", help="re-send what is already applied or unknown"
    )
    run.add_argument("--quiet", action="store_true", help="warnings and errors only")
    run.add_argument("--verbose", action="store_true", help="debug events too")

    sandbox = commands.add_parser("sandbox", help="serve the local sandbox API in the foreground")
    sandbox.add_argument("--seed", type=Path, help="seed JSON (default: the sample seed)")
    sandbox.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (default 8787)")
    sandbox.add_argument("--faults", type=Path, help="fault injection and rate limit (JSON)")
    sandbox.add_argument("--request-log", type=Path, help="append every request as a JSON line")
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
    if args.dry_run:
        result = pipeline.dry_run(args.input, job, out)
    elif args.sandbox:
        from reconcile.sandbox import SandboxServer, SandboxState, load_seed
        from reconcile.sandbox.state import DEFAULT_SEED

        state = SandboxState(load_seed(DEFAULT_SEED))
        with SandboxServer(state) as server:
            log.info("sandbox.started", url=server.url)
            result = pipeline.apply(
                args.input,
                job.with_overrides(base_url=server.url),
                out,
                environ=os.environ,
                given_credentials=state.credentials(),
                force=args.force,
                quiet=args.quiet,
            )
    else:
        result = pipeline.apply(
            args.input, job, out, environ=os.environ, force=args.force, quiet=args.quiet
        )
    report.print_summary(result.outcomes, out)
    if result.interrupted_by is not None:
        return 128 + result.interrupted_by
    return EXIT_OK if result.succeeded else EXIT_ROWS_FAILED


def _sandbox(args: argparse.Namespace) -> int:
    from reconcile.sandbox import Faults, SandboxState, load_seed, serve_forever
    from reconcile.sandbox.state import DEFAULT_SEED

    faults = Faults.from_dict(json.loads(args.faults.read_text())) if args.faults else Faults()
    state = SandboxState(load_seed(args.seed or DEFAULT_SEED), faults)
    state.log_path = args.request_log
    print(f"reconcile sandbox on http://127.0.0.1:{args.port} (Ctrl-C stops)", file=sys.stderr)
    serve_forever(state, args.port)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(verbose=getattr(args, "verbose", False), quiet=getattr(args, "quiet", False))
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "sandbox":
            return _sandbox(args)
    except ReconcileError as exc:
        log.error("run.unusable", error=str(exc))
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
