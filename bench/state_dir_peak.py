"""Measurement: the state dir's peak bytes during a real run (issue 27: the free space the state
dir needs per 1,000 rows), and the run's wall time.

The sandbox in its own process, no rate limit, concurrency 25 per community; a fresh state dir;
``reconcile run`` in a child process while this one sums the sizes of every file under the state
dir (ledger, its WAL and shared-memory files, locks) every 2 ms.

    uv run python -m bench.state_dir_peak [--rows 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._sandbox import KEY_ENV, sandbox_process, write_job, write_orders


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` now (files vanishing meanwhile count 0)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def measure(rows: int, folder: Path) -> dict[str, float]:
    """Peak and final bytes of the state dir of one ``rows``-row run, and its wall time."""
    state = folder / "state"
    with sandbox_process(folder, orders=rows // 2 + 1) as url:
        job = write_job(folder / "job.toml", url, rate=1_000_000, concurrency=25, state_dir=state)
        source = write_orders(folder / "rows.csv", rows)
        command = [sys.executable, "-m", "reconcile.cli", "run", str(source), "--job", str(job)]
        command += ["--out", str(folder / "out.csv"), "--quiet"]
        peak, done = 0, threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, folder_bytes(state))
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        began = time.perf_counter()
        ended = subprocess.run(command, env={**os.environ, **KEY_ENV}, capture_output=True)
        seconds = time.perf_counter() - began
        done.set()
        watcher.join()
        if ended.returncode != 0:
            raise SystemExit(f"the run exited {ended.returncode}: {ended.stderr.decode()[-2000:]}")
    final = folder_bytes(state)
    return {"peak": max(peak, final), "final": final, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reconcile-state-peak-") as scratch:
        found = measure(args.rows, Path(scratch))
    per_thousand = found["peak"] / args.rows * 1000
    print(
        f"{args.rows} rows: state dir peak {found['peak'] / 2**20:.1f} MiB, after the run "
        f"{found['final'] / 2**20:.1f} MiB, {per_thousand / 2**20:.2f} MiB peak per 1,000 rows, "
        f"run {found['seconds']:.2f} s"
    )


if __name__ == "__main__":
    main()
