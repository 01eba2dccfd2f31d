"""Regenerate docs/report.png: a real run against the sandbox (429s and retries included),
rendered by headless Chromium.  uv run python docs/screenshot.py"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from reconcile.job import parse_job
from reconcile.pipeline import execute
from reconcile.run_types import RunOptions
from reconcile.sandbox import Faults, SandboxServer, SandboxState, load_seed
from reconcile.sandbox.seeding import add_orders, order_id
from reconcile.sandbox.state import DEFAULT_SEED, FaultRule

HERE = Path(__file__).resolve().parent


def main() -> None:
    seed = load_seed(DEFAULT_SEED)
    add_orders(seed, 60)
    faults = Faults(
        rules=[FaultRule(kind="error_before", status=503, share=0.05)], rate_per_second=8, burst=2
    )
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(SandboxState(seed, faults)) as server:
        folder = Path(tmp)
        lines = [
            "Community,Purchase History ID,Redemption Instructions,Voucher Code,Voucher Expiry Date"
        ]
        lines += [f"acme,{order_id('acme', n)},Collect at desk {n},," for n in range(40)]
        lines += [f"globex,{order_id('globex', n)},,GLX-{n},31/12/2027" for n in range(20)]
        lines += [f"acme,ORD9{n},Desk,," for n in range(4)]  # unknown orders: rejected
        lines += ["acme,2.02641E+19,Desk,,", "globex,ORD1,,CODE,2027-12-31", "initech,ORD2,Desk,,"]
        (folder / "corrections.csv").write_text("\n".join(lines) + "\n")
        job = parse_job(
            {
                "operation": "purchase-history",
                "base_url": server.url,
                "rate_per_second": 10,
                "backoff_base_seconds": 0.2,
                "state_dir": str(folder / "state"),
                "communities": {"acme": {"api_key_env": "A"}, "globex": {"api_key_env": "G"}},
            }
        )
        options = RunOptions(given_credentials=server.state.credentials(), handle_signals=False)
        execute(folder / "corrections.csv", job, folder / "corrections.results.csv", options)
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={folder / 'profile'}",
                f"--screenshot={HERE / 'report.png'}",
                "--window-size=1000,1250",
                "--hide-scrollbars",
                (folder / "corrections.results.report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )


if __name__ == "__main__":
    main()
