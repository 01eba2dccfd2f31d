"""Benchmark: whole-process start-up of the quick commands (issue 17, target 1).

Each command runs as a fresh process, as cron or a shell completion runs it; the figure is the
median wall time of ``--runs`` runs, next to ``python -c pass`` in the same environment. Bytecode
is compiled first (``compileall``): an installed tool has its .pyc files, and an environment with
PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module at every start.

Target: each within 0.25 s, and under 10x ``python -c pass``.

    uv run python -m bench.startup [--runs 15]
"""

from __future__ import annotations

import argparse
import compileall
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def median_seconds(command: list[str], runs: int) -> tuple[float, float]:
    """The median wall time and the median CPU time (user + system) of ``runs`` runs: on a
    shared machine the CPU time moves far less with the other load than the wall time."""
    wall, cpu = [], []
    for _ in range(runs):
        started, used = time.perf_counter(), _children_cpu()
        subprocess.run(command, capture_output=True, check=False, timeout=120)
        wall.append(time.perf_counter() - started)
        cpu.append(_children_cpu() - used)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "reconcile", quiet=1)
    compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=1)
    tool = [str(Path(sys.executable).with_name("reconcile"))]  # the installed entry point
    state = tempfile.mkdtemp()
    baseline, baseline_cpu = median_seconds([sys.executable, "-c", "pass"], args.runs)
    print(f"{args.runs} runs each, medians, bytecode cached")
    print(f"{'command':<28} {'seconds':>8} {'x python -c pass':>17} {'CPU seconds':>12}")
    print(f"{'python -c pass':<28} {baseline:>8.3f} {1:>17.1f} {baseline_cpu:>12.3f}")
    for words in (["--help"], ["--version"], ["operations"], ["runs", "--state-dir", state]):
        seconds, cpu = median_seconds([*tool, *words], args.runs)
        name = "reconcile " + " ".join(words[:1])
        print(f"{name:<28} {seconds:>8.3f} {seconds / baseline:>17.1f} {cpu:>12.3f}")


if __name__ == "__main__":
    main()
