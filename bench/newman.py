"""Benchmark (issue 17, target 5): reconcile against Newman, Postman's runner, on the same rows.

The sandbox (own process) allows R requests/s per community and answers after L seconds; 2
communities x N rows of purchase-history corrections. Newman runs one collection over the rows
as iteration data, one request at a time, as Postman users do; reconcile runs the same rows with
rate_per_second = R per community. Both are whole processes, timed from start to exit; every
row must be applied by both (no 429 left unanswered: the bench checks the sandbox's log).

The best reconcile can do is the rate limit's bound, rows / (2R) seconds; so the best ratio is
(Newman's time) / (rows / 2R), printed beside the measured ratio. Target: 4.5x Newman or better
(issue 17); 4.8x (issue 32).

reconcile runs ``--repeat`` times (a fresh sandbox and state dir each), Newman once; the ratio
takes reconcile's median. Each run's time is split by the sandbox's request log into its fixed
cost, before the first request arrives and after the last answer leaves (its arrival + L), and the
sending between them; the run's 429 answers (each holds its community >= 1 s) are counted beside
it. Each sandbox is warmed first (:func:`warm_up`). Bytecode is compiled first, as
``bench.startup`` does: an installed tool has its .pyc files, while PYTHONDONTWRITEBYTECODE=1
(set here) would recompile every module at every start.
``--deployed`` runs reconcile from ``build/deployed``, the project synced without the dev group
as the Containerfile installs it: no hypothesis, which pandera imports whenever it is installed.

    npm install --no-save --no-package-lock --prefix build/newman newman@6.2.2
    uv run python -m bench.newman [--rows 200] [--rate 25] [--latency 0.09] [--burst 2] [--repeat 3]
        [--deployed]
"""

from __future__ import annotations

import argparse
import compileall
import csv
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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


def warm_up(url: str, rows: int) -> float:
    """One PATCH per community on an order outside the rows (the sandbox holds ``rows + 1``), then
    a pause for the token buckets to refill; returns the time after it. A sandbox's first PATCH
    runs cold code paths (~80 ms here) while the requests paced 1/R behind it queue up: they reach
    its bucket together and 1-3 are answered 429 (each holding its community >= 1 s), at the start
    of nearly every run. A long-running API is warm; Newman, one request at a time, never sees
    it."""
    for community in ("acme", "globex"):
        httpx.patch(
            f"{url}/v1/purchase-histories/{order_id(community, rows)}",
            json={"redemptionInstructions": "warm-up"},
            headers={"Authorization": f"Bearer {KEYS[community]}"},
            timeout=30,
        ).raise_for_status()
    time.sleep(0.5)
    return time.time()


def applied(url: str, since: float) -> tuple[int, int]:
    """(distinct rows answered 2xx, answers 429) in the sandbox's log after ``since``."""
    log = [r for r in request_log(url) if r["time"] >= since]
    done = {r["path"] for r in log if 200 <= r["status"] < 300}
    return len(done), sum(r["status"] == 429 for r in log)


@dataclasses.dataclass(frozen=True)
class Timing:
    """One whole ``reconcile run`` process, split by the sandbox's request log."""

    total: float
    before_first: float
    """From the process's start to the first request's arrival."""
    after_last: float
    """From the last answer (the last 2xx request's arrival + the latency) to the exit."""
    cpu: float
    """User + system seconds of the process."""
    applied: int
    limited: int
    load: float
    """The 1-minute load average when the run ended (2 cores here)."""

    @property
    def fixed(self) -> float:
        return self.before_first + self.after_last

    def line(self) -> str:
        return (
            f"{self.total:6.2f} s = {self.before_first:.2f} before the first request + "
            f"{self.total - self.fixed:.2f} sending + {self.after_last:.2f} after the last "
            f"answer; CPU {self.cpu:.2f} s; {self.applied} applied, {self.limited} answers 429; "
            f"load {self.load:.1f}"
        )


def timeline(
    log: list[dict[str, Any]], started: float, ended: float, latency: float, cpu: float
) -> Timing:
    """``started``/``ended``: time.time() around the process; the log's times are arrivals."""
    answered = [r["time"] for r in log if 200 <= r["status"] < 300]
    first = min(r["time"] for r in log)
    last_answer = max(answered) + latency
    done = {r["path"] for r in log if 200 <= r["status"] < 300}
    return Timing(
        total=ended - started,
        before_first=first - started,
        after_last=ended - last_answer,
        cpu=cpu,
        applied=len(done),
        limited=sum(r["status"] == 429 for r in log),
        load=os.getloadavg()[0],
    )


def reconcile_once(
    folder: Path,
    rows: int,
    faults: dict[str, Any],
    args: argparse.Namespace,
    env: dict[str, str],
    python: str = sys.executable,
) -> Timing:
    """One ``reconcile run`` against a fresh (warmed) sandbox, with a fresh state dir."""
    shutil.rmtree(folder / "state", ignore_errors=True)
    with sandbox_process(folder, rows + 1, faults) as url:
        source, job = write_inputs(folder, url, args.rate, rows)
        warm_up(url, rows)
        command = [python, "-m", "reconcile.cli", "run", str(source), "--job", str(job)]
        command += ["--out", str(folder / "out.csv"), "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        subprocess.run(
            command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        ended = time.time()
        # The sandbox, a child too, is only counted once it is reaped: after this.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        log = [r for r in request_log(url) if r["time"] >= started]
        return timeline(log, started, ended, args.latency, cpu)


def compile_bytecode() -> None:
    """What an installed tool has: every module's .pyc (not rewritten at each start here)."""
    compileall.compile_dir(ROOT / "reconcile", quiet=1)
    compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=1)


def deployed_python() -> str:
    """The interpreter of ``build/deployed``: the project and its dependencies, no dev group,
    bytecode compiled (the Containerfile's ``uv sync --no-dev --compile-bytecode``)."""
    folder = ROOT / "build" / "deployed"
    subprocess.run(
        ["uv", "sync", "--quiet", "--no-dev", "--compile-bytecode"],
        check=True,
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(folder)},
    )
    return str(folder / "bin" / "python")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200, help="per community")
    parser.add_argument("--rate", type=float, default=25)
    parser.add_argument("--latency", type=float, default=0.09)
    parser.add_argument("--burst", type=float, default=2, help="the sandbox's token bucket")
    parser.add_argument("--repeat", type=int, default=3, help="reconcile runs (Newman runs once)")
    parser.add_argument("--deployed", action="store_true", help="reconcile without the dev group")
    args = parser.parse_args()
    compile_bytecode()
    python = deployed_python() if args.deployed else sys.executable
    faults = {
        "rate_per_second": args.rate,
        "burst": args.burst,
        "rules": [{"kind": "latency", "seconds": args.latency}],
    }
    rows = 2 * args.rows
    bound = rows / (2 * args.rate)
    env = {**os.environ, "BENCH_KEY_ACME": KEYS["acme"], "BENCH_KEY_GLOBEX": KEYS["globex"]}
    print(
        f"{rows} rows, 2 communities x {args.rate:g} requests/s, {args.latency * 1000:.0f} ms latency"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = []
        for n in range(args.repeat):
            runs.append(reconcile_once(folder, args.rows, faults, args, env, python))
            print(f"reconcile {n + 1}: {runs[-1].line()}")
        ours = statistics.median(t.total for t in runs)
        fixed = statistics.median(t.fixed for t in runs)
        print(
            f"reconcile: median {ours:.2f} s; fixed cost median {fixed:.2f} s (before the first "
            f"request {statistics.median(t.before_first for t in runs):.2f} s, after the last "
            f"answer {statistics.median(t.after_last for t in runs):.2f} s)"
        )
        newman = str(NEWMAN) if NEWMAN.exists() else shutil.which("newman")
        if newman is None:
            print(
                f"rate-limit bound {bound:.2f} s; newman not installed (see the docstring): no ratio"
            )
            return
        with sandbox_process(folder, args.rows + 1, faults) as url:
            path, data = newman_inputs(folder, url, args.rows)
            since = warm_up(url, args.rows)
            theirs = timed([newman, "run", str(path), "-d", str(data), "--reporters", "cli"], env)
            theirs_done, theirs_429 = applied(url, since)
    print(f"newman:    {theirs:.2f} s  ({theirs_done} rows applied, {theirs_429} answers 429)")
    print(f"ratio: reconcile is {theirs / ours:.2f}x faster than newman (target >= 4.8x)")
    print(
        f"rate-limit bound: {bound:.2f} s, so at best {theirs / bound:.2f}x; "
        f"the bound plus the fixed cost: {theirs / (bound + fixed):.2f}x"
    )


if __name__ == "__main__":
    main()
