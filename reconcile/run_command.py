"""``reconcile run``: one input given on the command line, every ready file of the job's inbox
(:mod:`reconcile.inbox`), or an approved plan's input; any of them against the sandbox
(``--sandbox``), and with ``--verify`` a read-back of what was sent
(:class:`reconcile.verify_command.AfterRun`). The command line's options become
:class:`~reconcile.run_types.RunOptions`; :func:`reconcile.pipeline.execute` runs each input.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import os
import sys
from pathlib import Path

from reconcile import approval, inbox, notify, pipeline, queueing, run_summary, verify_command
from reconcile.database import given_ledger_url
from reconcile.exceptions import ConfigError, InputError
from reconcile.inbox import Show
from reconcile.job import Job, load_job
from reconcile.logs import get_logger
from reconcile.run_types import RunOptions, RunResult

log = get_logger("reconcile")


def main(args: argparse.Namespace) -> int:
    """``reconcile run``'s exit code (the worst of its inputs')."""
    job = load_job(args.job).with_overrides(
        operation=args.operation,
        base_url=args.base_url.rstrip("/") if args.base_url else None,
        rate_per_second=args.rate,
        concurrency=args.concurrency,
        state_dir=args.state_dir,
        ledger_url=given_ledger_url(args.ledger_url, os.environ),
    )
    options = RunOptions(
        dry_run=args.dry_run,
        force=args.force,
        quiet=args.quiet,
        communities=frozenset(args.community) if args.community else None,
        sheet=args.sheet,
        environ=os.environ,
        wait=queueing.wait_from(args.wait, args.wait_timeout),
    )
    if args.verify_sample is not None and not args.verify:
        raise ConfigError("--verify-sample N goes with --verify")
    show = functools.partial(shown, approval_job=job.path if job.require_approval else None)
    if args.verify:
        return _run_verified(args, job, options, show)
    return _dispatch(args, job, options, show)


def _dispatch(args: argparse.Namespace, job: Job, options: RunOptions, show: Show) -> int:
    """An approved plan, one input, the job's inbox, or any of them against the sandbox."""
    if args.plan is not None:
        return _run_plan(args, job, options, show)
    if not args.sandbox or args.dry_run:
        return _run_inputs(args, job, options, show)
    from reconcile.sandbox import SandboxServer, SandboxState, load_seed  # starlette, uvicorn
    from reconcile.sandbox.state import DEFAULT_SEED

    state = SandboxState(load_seed(DEFAULT_SEED))
    with SandboxServer(state) as server:
        log.info("sandbox.started", url=server.url)
        rehearsal = dataclasses.replace(options, given_credentials=state.credentials())
        return _run_inputs(args, job.with_overrides(base_url=server.url), rehearsal, show)


def _run_verified(args: argparse.Namespace, job: Job, options: RunOptions, show: Show) -> int:
    """``run --verify``: the run, then a read-back of its rows (verify_command.AfterRun)."""
    if args.sandbox:
        raise ConfigError("--verify reads back a real run: it goes without --sandbox")
    after = verify_command.AfterRun(job, options.environ, args.verify_sample)
    # The write answers Returning.AI's rows are confirmed by.
    options = dataclasses.replace(options, on_answer=after.echoes)

    def show_then_verify(source: Path, ended: RunResult | InputError, out: Path) -> None:
        show(source, ended, out)
        after(source, ended, out)

    return _dispatch(args, job, options, show_then_verify) or after.worst


def _run_plan(args: argparse.Namespace, job: Job, options: RunOptions, show: Show) -> int:
    """``run --plan RUN_ID``: the approved plan's input, checked against the plan, sent."""
    if args.dry_run or args.sandbox:
        raise ConfigError("--plan applies an approved plan: it goes without --dry-run/--sandbox")
    if args.force:
        approval.refuse_forced(job.storage, args.plan, approval.acting_user(os.environ))
    approved = approval.approved_plan(job.storage, args.plan, job, dt.datetime.now(dt.UTC))
    source = args.plan_input or args.input or Path(approved.recorded.header["input_path"])
    planned = dataclasses.replace(options, plan=approved)
    return run_file(job, planned, source, show, out=args.out)


def _run_inputs(args: argparse.Namespace, job: Job, options: RunOptions, show: Show) -> int:
    """One input from the command line, or every ready file of the job's inbox."""
    if args.input is not None:
        return run_file(job, options, args.input, show, out=args.out)
    if args.out is not None:
        raise ConfigError("--out names one file: give INPUT too, or set results_dir in the job")
    return inbox.run_inbox(job, options, show, rehearsal=args.sandbox)


def run_file(
    job: Job, options: RunOptions, source: Path, show: Show, *, out: Path | None = None
) -> int:
    """One input given on the command line, never archived; its exit code. Its results go to
    ``out``, else into the job's results_dir named as an inbox file's, else to
    ``out/<input>.results.<format>``. An unusable input raises InputError (exit 2)."""
    if out is None and job.results_dir is not None:
        out = inbox.results_path(job, source, dt.datetime.now(dt.UTC), dry_run=options.dry_run)
    target = out or default_out(source, job.results_format)
    result = pipeline.execute(source, job, target, options)
    show(source, result, target)
    if job.notify_url:
        notify.notify(job.notify_url, result.manifest)
    return result.exit_code


def default_out(input_path: Path, results_format: str = "csv") -> Path:
    """Where an input's results go when neither ``--out`` nor results_dir says."""
    return Path("out") / f"{input_path.stem}.results.{results_format}"


def shown(
    source: Path, ended: RunResult | InputError, out: Path, *, approval_job: Path | None = None
) -> None:
    """What the operator sees of one input: the summary, or why it was unusable."""
    if isinstance(ended, InputError):
        print(f"reconcile: {ended}", file=sys.stderr)
        return
    run_summary.print_summary(ended.outcomes, out, ended.manifest, approval_job=approval_job)
