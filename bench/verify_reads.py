"""Benchmark: read-back verification (issue 31): reads per second per community against the
rate limit, and the client's CPU per read next to its CPU per write.

The sandbox (own process) allows R requests/s per credential (bucket of R) with 40 ms of
latency; 2 Voucherify projects x N orders are written by ``reconcile run`` (N PUTs each), then
read back by ``reconcile verify FILE`` (N GETs each), both at rate_per_second = R. Targets:
reads/s per community within 10% of R, no 429, and CPU per read at most CPU per write (a read
is one GET plus a comparison; a write is one request plus the ledger).

    uv run python -m bench.verify_reads [--rate 20] [--orders 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._sandbox import request_log, sandbox_process

APPS = {
    "acme": ("app-acme-0001", "sandbox-token-acme"),
    "globex": ("app-globex-0001", "sandbox-token-globex"),
}
PROJECTS = {"acme": "64a000000000000000000001", "globex": "64a000000000000000000002"}


def seeded(orders: int) -> Any:
    def more(seed: dict[str, Any]) -> None:
        for name, project in PROJECTS.items():
            seed["voucherifyOrders"] += [
                {
                    "id": f"ord_b{name}{n:06d}",
                    "project": project,
                    "status": "CREATED",
                    "amount": 1000,
                    "metadata": {},
                }
                for n in range(orders)
            ]

    return more


def write_inputs(folder: Path, url: str, rate: float, orders: int) -> tuple[Path, Path]:
    lines = ["community,orderId,status,amount,metadata.tier"]
    lines += [f"{c},ord_b{c}{n:06d},PAID,{1000 + n},gold" for n in range(orders) for c in PROJECTS]
    source = folder / "orders.csv"
    source.write_text("\n".join(lines) + "\n")
    job = folder / "job.toml"
    text = (
        f'operation = "voucherify-order"\nbase_url = "{url}"\nrate_per_second = {rate}\n'
        f'concurrency = 8\nverify_settle_seconds = 0\nstate_dir = "{folder / "state"}"\n'
    )
    for name in PROJECTS:
        text += f'[communities.{name}]\napp_id_env = "BENCH_APP_{name.upper()}"\napp_token_env = "BENCH_TOKEN_{name.upper()}"\n'
    job.write_text(text)
    return source, job


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one reconcile command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "reconcile.cli", *command],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--orders", type=int, default=200, help="per community")
    args = parser.parse_args()
    faults = {
        "rate_per_second": args.rate,
        "burst": args.rate,
        "rules": [{"kind": "latency", "seconds": 0.04}],
    }
    env = {**os.environ}
    for name, (app_id, token) in APPS.items():
        env[f"BENCH_APP_{name.upper()}"], env[f"BENCH_TOKEN_{name.upper()}"] = app_id, token
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(Path(tmp), 0, faults, seeded(args.orders)) as url,
    ):
        folder = Path(tmp)
        source, job = write_inputs(folder, url, args.rate, args.orders)
        write_wall, write_cpu = timed(
            ["run", str(source), "--job", str(job), "--out", str(folder / "out.csv")], env
        )
        before = len(request_log(url))
        read_wall, read_cpu = timed(
            ["verify", str(source), "--job", str(job), "--out", str(folder / "v.csv")], env
        )
        reads = request_log(url)[before:]
    count = len(reads)
    limited = sum(r["status"] == 429 for r in reads)
    writes = 2 * args.orders
    print(
        f"writes: {writes} in {write_wall:.1f} s, CPU {1000 * write_cpu / writes:.2f} ms per write"
    )
    print(
        f"reads:  {count} in {read_wall:.1f} s = {count / read_wall / 2:.1f} reads/s per community (rate {args.rate:g}), {limited} answered 429"
    )
    print(
        f"CPU per read {1000 * read_cpu / max(count, 1):.2f} ms (per write {1000 * write_cpu / writes:.2f} ms)"
    )
    print(f"only GETs during verify: {all(r['method'] == 'GET' for r in reads)}")


if __name__ == "__main__":
    main()
