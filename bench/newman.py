"""Benchmark (issue 17, target 5): reconcile against Newman, Postman's runner, on the same rows.

The sandbox (own process) allows R requests/s per community and answers after L seconds; 2
communities x N rows of purchase-history corrections. Newman runs one collection over the rows
as iteration data, one request at a time, as Postman users do; reconcile runs the same rows with
rate_per_second = R per community. Both are whole processes, timed from start to exit; every
row must be applied by both (no 429 left unanswered: the bench checks the sandbox's log).

The best reconcile can do is the rate limit's bound, rows / (2R) seconds; so the best ratio is
(Newman's time) / (rows / 2R), printed beside the measured ratio. Target: 4.5x Newman or better.

    npm install --no-save --no-package-lock --prefix build/newman newman@6.2.2
    uv run python -m bench.newman [--rows 200] [--rate 25] [--latency 0.09] [--burst 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._sandbox import KEYS, request_log, sandbox_process
from bench.rate_limit import write_inputs
from reconcile.sandbox.seeding import order_id

ROOT = Path(__file__).resolve().parents[1]
NEWMAN = ROOT / "build" / "newman" / "node_modules" / ".bin" / "newman"


def collection(url: str) -> dict[str, object]:
    """One PATCH per iteration, the row's values from the data file."""
    return {
        "info": {
            "name": "purchase-history corrections",
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "item": [
            {
                "name": "PATCH purchase history",
                "request": {
                    "method": "PATCH",
                    "header": [
                        {"key": "Authorization", "value": "Bearer {{key}}"},
                        {"key": "Content-Type", "value": "application/json"},
                    ],
                    "body": {
                        "mode": "raw",
                        "raw": '{"redemptionInstructions": "{{redemptionInstructions}}"}',
                    },
                    "url": f"{url}/v1/purchase-histories/{{{{purchaseHistoryID}}}}",
                },
            }
        ],
    }


def newman_inputs(folder: Path, url: str, per_community: int) -> tuple[Path, Path]:
    path = folder / "collection.json"
    path.write_text(json.dumps(collection(url)))
    data = folder / "rows-newman.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["community", "key", "purchaseHistoryID", "redemptionInstructions"])
        for n in range(per_community):
            for community in ("acme", "globex"):
                writer.writerow([community, KEYS[community], order_id(community, n), "Collect"])
    return path, data


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def applied(url: str) -> tuple[int, int]:
    """(distinct rows answered 2xx, answers 429) in the sandbox's log."""
    log = request_log(url)
    done = {r["path"] for r in log if 200 <= r["status"] < 300}
    return len(done), sum(r["status"] == 429 for r in log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200, help="per community")
    parser.add_argument("--rate", type=float, default=25)
    parser.add_argument("--latency", type=float, default=0.09)
    parser.add_argument("--burst", type=float, default=2, help="the sandbox's token bucket")
    args = parser.parse_args()
    faults = {
        "rate_per_second": args.rate,
        "burst": args.burst,
        "rules": [{"kind": "latency", "seconds": args.latency}],
    }
    rows = 2 * args.rows
    bound = rows / (2 * args.rate)
    env = {**os.environ, "BENCH_KEY_ACME": KEYS["acme"], "BENCH_KEY_GLOBEX": KEYS["globex"]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with sandbox_process(folder, args.rows, faults) as url:
            source, job = write_inputs(folder, url, args.rate, args.rows)
            command = [sys.executable, "-m", "reconcile.cli", "run", str(source), "--job", str(job)]
            ours = timed([*command, "--out", str(folder / "out.csv"), "--quiet"], env)
            ours_done, ours_429 = applied(url)
        newman = str(NEWMAN) if NEWMAN.exists() else shutil.which("newman")
        if newman is None:
            print(f"reconcile: {ours:.2f} s for {rows} rows (bound {bound:.2f} s)")
            print("newman not installed: see the module docstring; no ratio")
            return
        with sandbox_process(folder, args.rows, faults) as url:
            path, data = newman_inputs(folder, url, args.rows)
            theirs = timed([newman, "run", str(path), "-d", str(data), "--reporters", "cli"], env)
            theirs_done, theirs_429 = applied(url)
    print(
        f"{rows} rows, 2 communities x {args.rate:g} requests/s, {args.latency * 1000:.0f} ms latency"
    )
    print(f"reconcile: {ours:.2f} s  ({ours_done} rows applied, {ours_429} answers 429)")
    print(f"newman:    {theirs:.2f} s  ({theirs_done} rows applied, {theirs_429} answers 429)")
    print(f"ratio: reconcile is {theirs / ours:.2f}x faster than newman (target >= 4.5x)")
    print(f"rate-limit bound: {bound:.2f} s, so at best {theirs / bound:.2f}x")


if __name__ == "__main__":
    main()
