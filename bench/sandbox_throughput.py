"""Benchmark: requests per second the sandbox sustains (issue 3 target: at least 2,000/s).

The sandbox runs in its own process; a separate aiohttp load generator (the cheapest client
here) keeps 50 PATCH requests in flight over keep-alive connections.

    uv run python bench/sandbox_throughput.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from bench._sandbox import KEYS, sandbox_process
from reconcile.sandbox.seeding import order_id

ORDERS = 2000


async def load(url: str, total: int, in_flight: int) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    counter = iter(range(total))
    body = json.dumps({"redemptionInstructions": "Collect at the desk"})
    headers = {"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for n in counter:
                target = f"{url}/v1/purchase-histories/{order_id('acme', n % ORDERS)}"
                async with session.patch(target, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started, statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp), ORDERS) as url:
        asyncio.run(load(url, 2000, args.in_flight))  # warm-up
        elapsed, statuses = asyncio.run(load(url, args.requests, args.in_flight))
    rate = args.requests / elapsed
    print(
        f"sandbox: {args.requests} PATCH in {elapsed:.2f} s = {rate:,.0f} requests/s "
        f"({args.in_flight} in flight); statuses {statuses}; target >= 2,000/s: {rate >= 2000}"
    )


if __name__ == "__main__":
    main()
