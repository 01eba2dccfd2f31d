"""The console's History at 10,000 runs: one page (and each filter) over real HTTP.

    uv run python -m bench.console_history [--runs 10000] [--ledger-url postgresql://...]

Seeds the runs through the ledger's own API (``Ledger.start_run`` / ``end_run``), serves the
console on 127.0.0.1 and times ``GET /history`` pages: the first, a deep one, and each filter
(job, user, status, date range). Target (issue 30): < 100 ms per page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from reconcile.database import Storage
from reconcile.job import Job, parse_job
from reconcile.ledger import Ledger

#: The seeded runs' shape, by index: every 4th a dry run; the rest end 0, 1 or 2 in turn.
START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
OPERATORS = ("cron@batch1", "cron@batch2", "dana@laptop", "erin@laptop", "inbox@batch1")


def seeded_exit(index: int) -> int:
    return 0 if index % 4 == 0 else (index % 4) - 1


def seeded_start(index: int) -> dt.datetime:
    """One run every 10 minutes from 1 September 2026 (10,000 runs end on 9 November)."""
    return START + dt.timedelta(minutes=10 * index)


def seed_runs(storage: Storage, job: Job, count: int) -> None:
    """``count`` ended runs of ``job`` in its ledger, in one transaction."""
    ledger = Ledger(storage)
    try:
        with ledger.db.transaction():
            for index in range(count):
                run_id = f"seed-{index:06d}"
                ledger.start_run(
                    {
                        "run_id": run_id,
                        "started_at": seeded_start(index).isoformat(timespec="milliseconds"),
                        "dry_run": int(index % 4 == 0),
                        "operation": job.operation,
                        "base_url": job.base_url,
                        "job_path": str(job.path) if job.path else None,
                        "input_path": f"/srv/inbox/corrections-{index:06d}.csv",
                        "input_sha256": f"{index:064x}",
                        "operator": OPERATORS[index % len(OPERATORS)],
                        "tool_version": "bench",
                    }
                )
                counts = {"rows": 10, "per_status": {"applied": 10}, "per_community": {}}
                ledger.end_run(
                    run_id, counts=counts, exit_code=seeded_exit(index), results_path="r.csv"
                )
    finally:
        ledger.close()


def _sign_in(client: httpx.Client, user: str, password: str) -> None:
    page = client.get("/login").text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no sign-in form"
    data = {"csrf_token": found.group(1), "username": user, "password": password}
    assert client.post("/login", data=data).status_code == 303


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--ledger-url", default=None)
    args = parser.parse_args()

    from reconcile.serving import ThreadServer
    from reconcile.web.app import create_app
    from reconcile.web.console import Console
    from reconcile.web.security import Signer
    from reconcile.web.users import UserStore

    with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
        storage = Storage(Path(folder), args.ledger_url)
        job = parse_job(
            {
                "operation": "purchase-history",
                "base_url": "https://api.example.invalid",
                "communities": {"acme": {"api_key_env": "X"}},
                "state_dir": folder,
            }
        )
        job = job.with_overrides(ledger_url=args.ledger_url)
        started = time.perf_counter()
        seed_runs(storage, job, args.runs)
        print(f"seeded {args.runs} runs in {time.perf_counter() - started:.1f} s")
        console = Console({"nightly": job}, storage, {})
        users = UserStore(storage)
        users.add("viewer", "viewer", "bench-viewer-passphrase")
        pages = {
            "first page": "",
            "page 100": "page=100",
            "job": "job=nightly&page=3",
            "user": "user=dana@laptop",
            "status": "status=partial&page=2",
            "date range": "since=2026-10-01&until=2026-10-31",
        }
        app = create_app(console, users, Signer("bench"))
        with ThreadServer(app) as server, httpx.Client(base_url=server.url) as client:
            _sign_in(client, "viewer", "bench-viewer-passphrase")
            for name, query in pages.items():
                times = []
                for _ in range(args.repeat):
                    begun = time.perf_counter()
                    answer = client.get(f"/history?{query}")
                    times.append(time.perf_counter() - begun)
                    assert answer.status_code == 200
                median = statistics.median(times) * 1000
                print(f"{name:<12} median {median:6.1f} ms  ({len(answer.content) // 1024} KB)")
        console.close()
        users.close()


if __name__ == "__main__":
    main()
