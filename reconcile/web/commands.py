"""``reconcile serve`` and ``reconcile users``: the console's commands."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import uvicorn

from reconcile.database import Storage, given_ledger_url
from reconcile.exceptions import ConfigError
from reconcile.job import Job, default_state_dir, load_job, parse_job
from reconcile.operations import OPERATIONS
from reconcile.sandbox import SandboxServer, SandboxState, load_seed
from reconcile.sandbox.seeding import add_orders
from reconcile.sandbox.state import DEFAULT_SEED
from reconcile.web.app import create_app
from reconcile.web.console import Console
from reconcile.web.context import Settings
from reconcile.web.security import Signer, load_secret
from reconcile.web.users import UserStore, user_store


def _storage(args: argparse.Namespace) -> Storage:
    """The console's store: ``--state-dir`` / ``--ledger-url`` (or RECONCILE_LEDGER_URL), else
    the (first) ``--job``'s, else the default state dir's SQLite ledger."""
    given = getattr(args, "job", None)
    job = load_job(given[0] if isinstance(given, list) else given) if given else None
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else None
    url = given_ledger_url(getattr(args, "ledger_url", None), os.environ)
    return Storage(
        state_dir or (job.state_dir if job else default_state_dir()),
        url or (job.ledger_url if job else None),
    )


def users(args: argparse.Namespace) -> int:
    """``users add NAME --role R --password-stdin`` / ``users list`` / ``users disable NAME``."""
    with user_store(_storage(args)) as store:
        if args.action == "list":
            for user in store.list():
                state = "disabled" if user.disabled else "active"
                print(f"{user.name:<24} {user.role.value:<10} {state}")
            return 0
        if not args.name:
            raise ConfigError(f"users {args.action} needs a NAME")
        if args.action == "disable":
            store.disable(args.name)
            print(f"user {args.name} disabled; their sessions are ended")
            return 0
        if not args.password_stdin:
            raise ConfigError(
                "give the password on standard input with --password-stdin (never as an "
                "argument: it would be in the shell history and the process list)"
            )
        password = sys.stdin.readline().rstrip("\r\n")
        user = store.add(args.name, args.role or "", password)
        print(f"user {user.name} added with role {user.role.value}")
        return 0


def serve(args: argparse.Namespace) -> int:
    """Serve the console until interrupted (uvicorn)."""
    if args.demo:
        with _demo(args) as (jobs, state_dir, environ, passwords):
            for name, (role, password) in passwords.items():
                print(f"demo user {name} ({role}): one-time password {password}", flush=True)
            return _serve(args, jobs, Storage(state_dir), environ)
    if not args.job:
        raise ConfigError("serve needs at least one --job JOB.toml (or --demo)")
    storage = _storage(args)
    jobs = {}
    for path in args.job:
        job = load_job(Path(path)).with_overrides(
            state_dir=args.state_dir,
            ledger_url=given_ledger_url(args.ledger_url, os.environ),
        )
        jobs[Path(path).stem.removesuffix(".example")] = job
    return _serve(args, jobs, storage, os.environ)


def _serve(
    args: argparse.Namespace, jobs: Mapping[str, Job], storage: Storage, environ: Mapping[str, str]
) -> int:
    console = Console(jobs, storage, environ)
    users = UserStore(storage)
    settings = Settings(
        max_upload_mb=args.max_upload_mb,
        trust_user_header=args.trust_user_header,
        trusted_proxy=args.trusted_proxy,
        demo=args.demo,
    )
    resumed = console.resume_unfinished(users)
    for plan in resumed:
        print(f"resumed the run of plan {plan} (the server stopped during it)", file=sys.stderr)
    app = create_app(console, users, Signer(load_secret(console.state_dir)), settings)
    print(f"reconcile console on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            proxy_headers=False,  # reconcile.web.security.TrustedProxy reads them
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
    finally:
        console.close()
        users.close()
    return 0


@contextlib.contextmanager
def _demo(
    args: argparse.Namespace,
) -> Iterator[tuple[dict[str, Job], Path, dict[str, str], dict[str, tuple[str, str]]]]:
    """The built-in sandbox, the example jobs pointed at it, two demo users."""
    seed = load_seed(DEFAULT_SEED)
    add_orders(seed, 300)
    state = SandboxState(seed)
    with (
        SandboxServer(state) as sandbox,
        tempfile.TemporaryDirectory(prefix="reconcile-demo-") as folder,
    ):
        state_dir = Path(args.state_dir) if args.state_dir else Path(folder)
        jobs, environ = {}, dict(os.environ)
        for name, operation in OPERATIONS.items():
            communities: dict[str, dict[str, str]] = {}
            for community, found in state.credentials().items():
                table = communities.setdefault(community, {})
                for credential in operation.credentials:
                    variable = f"RECONCILE_DEMO_{credential}_{community}".upper()
                    table[f"{credential}_env"] = variable
                    environ[variable] = found.get(credential, "")
            raw = {"operation": name, "base_url": sandbox.url, "communities": communities}
            jobs[name] = parse_job({**raw, "state_dir": str(state_dir)})
        passwords = {"alice": ("submitter", secrets.token_urlsafe(12))}
        passwords["bob"] = ("approver", secrets.token_urlsafe(12))
        with user_store(state_dir) as store:
            for name, (role, password) in passwords.items():
                if store.get(name) is None:
                    store.add(name, role, password, one_time=True)
                else:
                    passwords[name] = (role, "(kept from an earlier demo in this state dir)")
        yield jobs, state_dir, environ, passwords
