"""Benchmark: what the ledger adds to the wall time of a 10,000-row run (issue 5: at most 10%).

Sandbox in its own process, no rate limit; 2 communities x 5,000 rows, concurrency 25 each.
Each variant runs in a fresh process, in alternating order, best of --repeat:

- with ledger:    `pipeline.execute` (fingerprints, triage, an in-flight commit before every
                  request and an outcome commit after it, run record, manifest)
- without ledger: the same read/validate/plan, dispatch with no recorder, same results files
                  and report

    uv run python -m bench.ledger_overhead [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._sandbox import KEYS, sandbox_process
from reconcile.sandbox.seeding import order_id

PER_COMMUNITY = 5000


def child(variant: str, url: str, folder: Path) -> None:
    import anyio
    import structlog

    from reconcile import pipeline, report, results, run_types, sending, triage
    from reconcile.credentials import Secrets
    from reconcile.job import parse_job

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    source = folder / "rows.csv"
    job = parse_job(
        {
            "operation": "purchase-history",
            "base_url": url,
            "rate_per_second": 1_000_000,
            "concurrency": 25,
            "state_dir": str(folder / f"state-{time.time_ns()}"),
            "communities": {"acme": {"api_key_env": "A"}, "globex": {"api_key_env": "G"}},
        }
    )
    credentials = {name: {"api_key": key} for name, key in KEYS.items()}
    out = folder / f"{variant}.csv"
    started = time.perf_counter()
    if variant == "with":
        options = run_types.RunOptions(
            given_credentials=credentials, quiet=True, handle_signals=False
        )
        result = pipeline.execute(source, job, out, options)
        statuses = set(result.outcomes.get_column("status"))
    else:
        prepared = pipeline.prepare(source, job)
        requests = triage.planned(
            triage.with_fingerprints(prepared.plan.requests, job).with_columns(
                decided=None, note=None
            )
        )
        sent, _, events = anyio.run(
            lambda: sending.send_requests(
                prepared.operation,
                job,
                requests,
                {name: Secrets(values) for name, values in credentials.items()},
                force=False,
                quiet=True,
                handle_signals=False,
            ),
            backend_options=sending.EVENT_LOOP,
        )
        outcomes = results.row_outcomes(
            prepared.validated,
            prepared.plan.rows,
            prepared.plan.requests,
            triage.outcomes_frame(sent),
        )
        results.write_results(prepared.table, outcomes, out)
        manifest = {
            "run_id": "-",
            "operation": job.operation,
            "dry_run": False,
            "exit_code": 0,
            "input": {"path": str(source)},
            "started_at": "-",
            "ended_at": "-",
        }
        report.write_report(pipeline.sibling(out, "report.html"), manifest, outcomes, events)
        statuses = set(outcomes.get_column("status"))
    elapsed = time.perf_counter() - started
    assert statuses == {"applied"}, statuses
    print(json.dumps({"seconds": elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=PER_COMMUNITY, help="per community")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    per_community = args.rows
    if args.child:
        variant, url, folder = args.child
        return child(variant, url, Path(folder))
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp), per_community) as url:
        lines = ["community,purchaseHistoryID,redemptionInstructions"]
        lines += [
            f"{c},{order_id(c, n)},Desk {n}"
            for n in range(per_community)
            for c in ("acme", "globex")
        ]
        (Path(tmp) / "rows.csv").write_text("\n".join(lines) + "\n")
        times: dict[str, list[float]] = {"with": [], "without": []}
        for attempt in range(args.repeat):
            # Alternate the order: the sandbox's log grows, so a fixed order would favour one side.
            for variant in ("without", "with") if attempt % 2 else ("with", "without"):
                done = subprocess.run(
                    [sys.executable, "-m", "bench.ledger_overhead", "--child", variant, url, tmp],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                times[variant].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    without, with_ledger = min(times["without"]), min(times["with"])
    print(f"{2 * per_community:,} rows, no rate limit, best of {args.repeat}")
    print(f"without ledger: {without:.2f} s   with ledger: {with_ledger:.2f} s")
    print(f"overhead: {with_ledger / without - 1:+.1%} (target <= +10%)")


if __name__ == "__main__":
    main()
