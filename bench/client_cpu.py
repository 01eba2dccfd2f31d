"""Benchmark: client CPU per request, the tool vs. bare client loops (issue 4).

Against the sandbox (own process, no rate limit), 50 requests in flight, each variant in a fresh
process measuring its own CPU time (user + system) over the sending phase only:

- httpx-default: a bare loop over httpx.AsyncClient with its default transport
- client:        the same loop on reconcile's client alone (``client.send``, its aiohttp transport)
- aiohttp:       a bare aiohttp loop
- reconcile:     the tool's dispatch (pacing, retries, outcomes, progress), rows planned from a CSV

Target: the tool at most 0.5 ms CPU per request.

    uv run python -m bench.client_cpu [--requests 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._sandbox import KEY_ENV, KEYS, sandbox_process, write_job, write_orders
from reconcile.sandbox.seeding import order_id

ORDERS = 10000
IN_FLIGHT = 50
BODY = json.dumps({"redemptionInstructions": "Collect at the desk"})
HEADERS = {"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/json"}


def targets(url: str, total: int) -> list[str]:
    return [f"{url}/v1/purchase-histories/{order_id('acme', n % ORDERS)}" for n in range(total)]


async def bare_httpx(url: str, total: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    todo = iter(targets(url, total))
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits)) as client:

        async def worker() -> None:
            for target in todo:
                response = await client.patch(target, content=BODY, headers=HEADERS)
                assert response.status_code == 200

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def bare_transport(url: str, total: int) -> None:
    """reconcile's client alone (``client.send`` on its aiohttp transport): no dispatch."""
    from reconcile.client import make_client, send

    todo = iter(targets(url, total))
    headers = {"Authorization": HEADERS["Authorization"]}
    async with make_client(timeout_seconds=30, max_connections=IN_FLIGHT) as client:

        async def worker() -> None:
            for target in todo:
                answer = await send(client, "PATCH", target, headers=headers, body=BODY)
                assert answer.status == 200

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def bare_aiohttp(url: str, total: int) -> None:
    import aiohttp

    todo = iter(targets(url, total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:

        async def worker() -> None:
            for target in todo:
                async with session.patch(target, data=BODY, headers=HEADERS) as response:
                    await response.read()
                    assert response.status == 200

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def tool(url: str, total: int, folder: Path) -> tuple[float, float]:
    """Plan from a CSV, then time only the dispatch phase."""
    import anyio

    from reconcile import pipeline, sending, triage
    from reconcile.credentials import Credentials, Secrets
    from reconcile.job import parse_job

    source = folder / "rows.csv"
    lines = ["community,purchaseHistoryID,redemptionInstructions"]
    lines += [f"acme,{order_id('acme', n)},Collect at the desk {n}" for n in range(total)]
    source.write_text("\n".join(lines) + "\n")
    job = parse_job(
        {
            "operation": "purchase-history",
            "base_url": url,
            "rate_per_second": 1_000_000,
            "concurrency": IN_FLIGHT,
            "communities": {"acme": {"api_key_env": "BENCH_KEY"}},
        }
    )
    prepared = pipeline.prepare(source, job)
    requests = triage.planned(
        triage.with_fingerprints(prepared.plan.requests, job).with_columns(decided=None, note=None)
    )
    credentials: dict[str, Credentials] = {"acme": Secrets({"api_key": KEYS["acme"]})}
    cpu, wall = time.process_time(), time.perf_counter()
    outcomes, _, _ = anyio.run(
        lambda: sending.send_requests(
            prepared.operation,
            job,
            requests,
            credentials,
            force=False,
            quiet=True,
            handle_signals=False,
        ),
        backend_options=sending.EVENT_LOOP,
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(o.status == "applied" for o in outcomes), {o.status for o in outcomes}
    return cpu, wall


def whole_send_path(url: str, rows: int, folder: Path) -> float:
    """CPU seconds per row of the whole send path: a real ``reconcile run`` of ``rows`` rows
    (two communities, 25 in flight each) minus a dry run of the same file, both as processes
    (their CPU from the kernel's accounting of children)."""
    import os
    import resource

    source = write_orders(folder / "whole.csv", rows)
    env = {**os.environ, **KEY_ENV}

    def cpu_of(name: str, *flags: str) -> float:
        job = write_job(
            folder / f"{name}.toml", url, rate=100000, concurrency=25, state_dir=folder / name
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [sys.executable, "-m", "reconcile.cli", "run", str(source), "--job", str(job)]
        out = ["--out", str(folder / f"{name}.csv"), "--quiet", *flags]
        subprocess.run([*command, *out], check=True, env=env, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    dry = cpu_of("dry", "--dry-run")
    real = cpu_of("real")
    return (real - dry) / rows


def child(variant: str, url: str, total: int, folder: Path) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if variant == "reconcile":
        cpu, wall = tool(url, total, folder)
    else:
        cpu, wall = time.process_time(), time.perf_counter()
        if variant == "aiohttp":
            asyncio.run(bare_aiohttp(url, total))
        elif variant == "client":
            asyncio.run(bare_transport(url, total))
        else:
            asyncio.run(bare_httpx(url, total))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"cpu": cpu, "wall": wall}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--child", nargs=4)
    parser.add_argument(
        "--whole-rows", type=int, default=20000, help="rows of the whole-send-path run (0: skip)"
    )
    args = parser.parse_args()
    if args.child:
        variant, url, total, folder = args.child
        return child(variant, url, int(total), Path(folder))
    variants = ["httpx-default", "client", "aiohttp", "reconcile"]
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp), ORDERS) as url:
        print(
            f"{args.requests} PATCH requests per variant, {IN_FLIGHT} in flight, sandbox in its own process"
        )
        print(f"{'variant':<15}{'requests/s':>12}{'CPU ms/request':>16}")
        for variant in variants:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.client_cpu",
                    "--child",
                    variant,
                    url,
                    str(args.requests),
                    tmp,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            per_request[variant] = figures["cpu"] / args.requests
            print(
                f"{variant:<15}{args.requests / figures['wall']:>12,.0f}{figures['cpu'] / args.requests * 1000:>16.3f}"
            )
        tool_ratio = per_request["reconcile"] / per_request["aiohttp"]
        print(f"client: reconcile {tool_ratio:.2f}x aiohttp's CPU per request (target <= 2x)")
        if args.whole_rows:
            whole = whole_send_path(url, min(args.whole_rows, 2 * ORDERS), Path(tmp))
            print(
                f"whole send path ({args.whole_rows} rows, run minus dry run): "
                f"{whole * 1000:.3f} ms CPU/row = {whole / per_request['aiohttp']:.2f}x "
                "aiohttp (target <= 2.5x)"
            )


if __name__ == "__main__":
    main()
