"""Shared by the HTTP benchmarks: a sandbox in its own process, seeded with generated orders."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from reconcile.sandbox.seeding import add_orders, order_id
from reconcile.sandbox.state import DEFAULT_SEED, load_seed

KEYS = {"acme": "sandbox-key-acme", "globex": "sandbox-key-globex"}
#: The variables the benchmarks' job files (:func:`write_job`) name for the two keys.
KEY_ENV = {"BENCH_KEY_ACME": KEYS["acme"], "BENCH_KEY_GLOBEX": KEYS["globex"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sandbox_process(
    folder: Path,
    orders: int,
    faults: dict[str, Any] | None = None,
    more: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[str]:
    """Serve a sandbox (separate process, so its CPU is not the client's) and yield its URL;
    ``more`` adds records to the seed."""
    seed = load_seed(DEFAULT_SEED)
    add_orders(seed, orders)
    if more is not None:
        more(seed)
    (folder / "seed.json").write_text(json.dumps(seed))
    command = [
        sys.executable,
        "-m",
        "reconcile.cli",
        "sandbox",
        "--seed",
        str(folder / "seed.json"),
    ]
    if faults is not None:
        (folder / "faults.json").write_text(json.dumps(faults))
        command += ["--faults", str(folder / "faults.json")]
    port = free_port()
    process = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_sandbox/requests", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def request_log(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/_sandbox/requests", timeout=60).json()


def write_orders(path: Path, rows: int) -> Path:
    """``rows`` purchase-history rows changing the instructions of the sandbox's generated
    orders, acme and globex in turn (``rows // 2 + 1`` orders per community are enough)."""
    lines = ["community,purchaseHistoryID,redemptionInstructions"]
    lines += [
        f"{c},{order_id(c, n)},Collect at the desk"
        for n in range((rows + 1) // 2)
        for c in ("acme", "globex")
    ][:rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_job(path: Path, url: str, *, rate: float, concurrency: int, state_dir: Path) -> Path:
    """A purchase-history job for acme and globex, keys in the :data:`KEY_ENV` variables."""
    path.write_text(
        f'operation = "purchase-history"\nbase_url = "{url}"\nrate_per_second = {rate}\n'
        f'concurrency = {concurrency}\nstate_dir = "{state_dir}"\n'
        '[communities.acme]\napi_key_env = "BENCH_KEY_ACME"\n'
        '[communities.globex]\napi_key_env = "BENCH_KEY_GLOBEX"\n'
    )
    return path
