"""Shared by the HTTP benchmarks: a sandbox in its own process, seeded with generated orders."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from reconcile.sandbox.seeding import add_orders
from reconcile.sandbox.state import DEFAULT_SEED, load_seed

KEYS = {"acme": "sandbox-key-acme", "globex": "sandbox-key-globex"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sandbox_process(
    folder: Path, orders: int, faults: dict[str, Any] | None = None
) -> Iterator[str]:
    """Serve a sandbox (separate process, so its CPU is not the client's) and yield its URL."""
    seed = load_seed(DEFAULT_SEED)
    add_orders(seed, orders)
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
