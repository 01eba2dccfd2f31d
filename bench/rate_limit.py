"""Benchmark: a run against a rate-limited server (issue 4).

The sandbox (own process) allows R requests/s per community (token bucket, burst B) and adds
40 ms of latency; the job has 2 communities x 250 rows and rate_per_second = R. Targets: the
whole `reconcile run` command takes at most 1.1 x rows / (2R), and at most 1% of requests are
answered 429.

    uv run python -m bench.rate_limit [--rate 10] [--burst 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from bench._sandbox import KEY_ENV, request_log, sandbox_process, write_job, write_orders

ROWS_PER_COMMUNITY = 250


def write_inputs(folder: Path, url: str, rate: float, per_community: int) -> tuple[Path, Path]:
    source = write_orders(folder / "rows.csv", 2 * per_community)
    job = write_job(folder / "job.toml", url, rate=rate, concurrency=8, state_dir=folder / "state")
    return source, job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--burst", type=float, default=2)
    parser.add_argument("--rows", type=int, default=ROWS_PER_COMMUNITY, help="per community")
    args = parser.parse_args()
    faults = {
        "rate_per_second": args.rate,
        "burst": args.burst,
        "rules": [{"kind": "latency", "seconds": 0.04}],
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(Path(tmp), args.rows, faults) as url,
    ):
        folder = Path(tmp)
        source, job = write_inputs(folder, url, args.rate, args.rows)
        env = {**os.environ, **KEY_ENV}
        out = folder / "results.csv"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "reconcile.cli",
                "run",
                str(source),
                "--job",
                str(job),
                "--out",
                str(out),
                "--quiet",
            ],
            check=True,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        elapsed = time.perf_counter() - started
        log = request_log(url)
        statuses = pl.read_csv(out, infer_schema=False).get_column("status").value_counts()
    rows = 2 * args.rows
    ideal = rows / (2 * args.rate)
    limited = sum(r["status"] == 429 for r in log)
    print(f"R = {args.rate:g}/s per community (burst {args.burst:g}), 40 ms latency, {rows} rows")
    print(
        f"run: {elapsed:.2f} s; ideal rows/(2R) = {ideal:.2f} s; ratio {elapsed / ideal:.3f} (target <= 1.1)"
    )
    print(f"requests: {len(log)}; 429s: {limited} ({limited / len(log):.2%}, target <= 1%)")
    print(dict(statuses.iter_rows()))


if __name__ == "__main__":
    main()
