"""Measurement: peak memory of a real run and of its dry run, as whole processes.

A real run of ``--rows`` purchase-history rows (two communities, no rate limit) against the
sandbox in its own process, and a dry run of the same file; each process's peak RSS from the
kernel (``getrusage`` of the finished child). Two sizes give the memory per row, from which the
rows that fit a container's memory limit follow (deploy/cronjob.yaml: 2 GiB).

    uv run python -m bench.run_memory [--rows 50000 200000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._sandbox import KEY_ENV, sandbox_process, write_job, write_orders

LIMIT_MIB = 2048


def peak_of_run(source: Path, job: Path, out: Path, env: dict[str, str], *flags: str) -> float:
    """Peak RSS (MiB) of one ``reconcile run`` process, which must end with exit code 0."""
    command = [sys.executable, "-m", "reconcile.cli", "run", str(source), "--job", str(job)]
    with subprocess.Popen([*command, "--out", str(out), "--quiet", *flags], env=env) as child:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, child.returncode
    return usage.ru_maxrss / 1024


def measure(rows: int) -> tuple[float, float, float]:
    """(dry-run peak MiB, real-run peak MiB, real-run seconds) for ``rows`` rows."""
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp), rows // 2 + 1) as url:
        folder = Path(tmp)
        source = write_orders(folder / "rows.csv", rows)
        job = write_job(
            folder / "job.toml", url, rate=100000, concurrency=25, state_dir=folder / "state"
        )
        env = {**os.environ, **KEY_ENV}
        dry = peak_of_run(source, job, folder / "dry.csv", env, "--dry-run")
        started = time.perf_counter()
        real = peak_of_run(source, job, folder / "real.csv", env)
        return dry, real, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs=2, default=[50_000, 200_000])
    args = parser.parse_args()
    small, large = args.rows
    figures = {rows: measure(rows) for rows in (small, large)}
    print(f"{'rows':>9}{'dry run MiB':>13}{'real run MiB':>14}{'real run s':>12}")
    for rows, (dry, real, seconds) in figures.items():
        print(f"{rows:>9,}{dry:>13.0f}{real:>14.0f}{seconds:>12.1f}")
    per_row = (figures[large][1] - figures[small][1]) / (large - small)
    base = figures[large][1] - per_row * large
    print(
        f"real run: {per_row * 1024:.2f} KiB per row over {base:.0f} MiB; a {LIMIT_MIB} MiB "
        f"limit holds about {(LIMIT_MIB - base) / per_row:,.0f} rows"
    )


if __name__ == "__main__":
    main()
