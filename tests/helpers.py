"""Helpers the tests share: job files, CSV inputs, CLI runs read back, test credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from reconcile import cli
from reconcile.columns import ERROR
from reconcile.database import Storage
from reconcile.job import load_job
from reconcile.operations import OPERATIONS, Operation
from reconcile.sandbox import SandboxState, load_seed
from reconcile.sandbox.state import DEFAULT_SEED
from reconcile.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
#: The sandbox seed's credentials per community (``api_key``, ``app_id``, ...), the names the
#: operations declare in ``Operation.credentials``.
CREDENTIALS = SandboxState(load_seed(DEFAULT_SEED)).credentials()
KEYS = {name: found["api_key"] for name, found in CREDENTIALS.items() if name in ("acme", "globex")}
APPS = {name: (CREDENTIALS[name]["app_id"], CREDENTIALS[name]["app_token"]) for name in KEYS}
GENERATED = 300


def orders_csv(
    path: Path, rows: list[tuple[str, str]], instructions: str = "Collect at the desk"
) -> Path:
    """A CSV of (community, purchaseHistoryID) rows that change the instructions."""
    lines = ["community,purchaseHistoryID,redemptionInstructions"]
    quoted = '"' + instructions.replace('"', '""') + '"'
    lines += [f"{c},{i},{quoted}" for c, i in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def credential_env(credential: str, community: str) -> str:
    """The environment variable the tests' job files name for one community's credential."""
    return f"RECONCILE_TEST_{credential.upper()}_{community.upper()}"


def write_job(path: Path, base_url: str = "https://api.example.invalid", **top: Any) -> Path:
    """A job file for acme and globex, credentials in :func:`credential_env` variables; ``top``
    adds settings."""
    settings = {
        "operation": "purchase-history",
        "base_url": base_url,
        "rate_per_second": 50,
        "concurrency": 4,
        "state_dir": str(path.parent / "state"),
        **top,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    # Every credential any operation declares, so one job file serves --operation overrides.
    declared = dict.fromkeys(c for op in OPERATIONS.values() for c in op.credentials)
    for name in ("acme", "globex"):
        lines.append(f"[communities.{name}]")
        lines += [f'{c}_env = "{credential_env(c, name)}"' for c in declared]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def storage_of(job: Path) -> Storage:
    """Where a job's ledger is for this test: its state dir, or the PostgreSQL ledger the
    ``ledger_backend`` fixture put in RECONCILE_LEDGER_URL."""
    loaded = load_job(job)
    return Storage(loaded.state_dir, os.environ.get("RECONCILE_LEDGER_URL"))


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def read_results(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False, encoding="utf8")


def run(*args: str | Path) -> int:
    """The CLI, in-process, as a user would call it."""
    return cli.main([str(a) for a in args])


def run_orders(
    job: Path, rows: list[tuple[str, str]], folder: Path, *flags: str
) -> tuple[int, pl.DataFrame]:
    """The CLI on an orders CSV of ``rows`` (written in ``folder``): exit code and results."""
    out = folder / "out.csv"
    code = run("run", orders_csv(folder / "in.csv", rows), "--job", job, "--out", out, *flags)
    return code, read_results(out)


def validation_errors(
    operation: Operation, *rows: dict[str, str | None], families: tuple[str, ...] = ()
) -> list[str | None]:
    """Validate rows (missing keys = empty cells; ``families``: family columns such as
    ``metadata.location``) for the communities acme and globex; each row's error text."""
    names = operation.column_names + list(families)
    records = [{c: r.get(c) for c in names} for r in rows]
    frame = pl.DataFrame(records, schema=dict.fromkeys(names, pl.String))
    frame = frame.with_row_index("__row", offset=2)
    headers = {c: c for c in names}
    return validate(frame, operation, ["acme", "globex"], headers).get_column(ERROR).to_list()


def run_sample(tmp_path: Path, sample: str, job: str, out: Path, *flags: str) -> int:
    """The CLI on a shipped sample file and example job, its ledger under ``tmp_path``."""
    return run(
        "run",
        SAMPLE / sample,
        "--job",
        ROOT / "jobs" / job,
        "--out",
        out,
        "--state-dir",
        tmp_path,
        *flags,
    )
