"""What start-up loads, nothing timed: quick commands none of the heavy libraries (issue 17), and a
run httpx only when its job has a webhook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from tests.helpers import orders_csv, read_results, write_job

HEAVY = ("polars", "pandera", "httpx", "aiohttp", "starlette", "rich", "structlog")
PROBE = """
import sys
from reconcile.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED:" + ",".join(m for m in {modules!r} if m in sys.modules), file=sys.stderr)
"""


def _loaded(args: list[str], modules: tuple[str, ...]) -> str:
    """Which of ``modules`` a fresh interpreter holds after running ``reconcile ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    [marker] = [line for line in done.stderr.splitlines() if line.startswith("LOADED:")]
    return marker.removeprefix("LOADED:")


@pytest.mark.parametrize("command", [["--help"], ["--version"], ["operations"], ["runs"]])
def test_quick_commands_import_no_heavy_library(command: list[str], tmp_path: object) -> None:
    """`--help`, `--version`, `operations` and `runs` load none of polars, pandera, httpx,
    aiohttp, starlette, rich or structlog (checked in a fresh interpreter's sys.modules)."""
    args = [*command, "--state-dir", str(tmp_path)] if command == ["runs"] else command
    loaded = _loaded(args, HEAVY)
    assert loaded == "", f"{command} imported {loaded}"


COMMAND_MODULES = (
    "reconcile.ledger",
    "reconcile.operations",
    "reconcile.pipeline",
    "reconcile.audit",
)


@pytest.mark.parametrize("command", [["--help"], ["--version"], ["run", "--help"]])
def test_help_loads_the_parser_alone(command: list[str]) -> None:
    """`--help` and `--version` load no command's own modules (the ledger, the operations, the
    pipeline, the audit store): the CLI loads them when their command runs."""
    loaded = _loaded(command, COMMAND_MODULES)
    assert loaded == "", f"{command} loaded {loaded}"


def test_a_run_still_loads_what_it_needs() -> None:
    """The lazy modules are the real ones once used: an operation builds its pandera schema."""
    from reconcile.operations import get_operation

    schema = get_operation("purchase-history").schema(["acme"])
    assert type(schema).__module__.startswith("pandera")


RUN_PROBE = """
import sys
from reconcile.cli import main
code = main(sys.argv[1:])
print("LOADED:" + ",".join(m for m in ("httpx",) if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.usefixtures("keys_in_env")
def test_a_run_without_a_webhook_never_loads_httpx(tmp_path: Path, sandbox: SandboxServer) -> None:
    """A real run whose job sets no notify_url sends over aiohttp and never imports httpx, the
    webhook's client (with click, email and urllib.request: a share of every run's start-up)."""
    job = write_job(tmp_path / "j.toml", sandbox.url)
    source = orders_csv(tmp_path / "in.csv", [("acme", order_id("acme", 0))])
    command = ["run", str(source), "--job", str(job), "--out", str(tmp_path / "out.csv")]
    done = subprocess.run(
        [sys.executable, "-c", RUN_PROBE, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert read_results(tmp_path / "out.csv").get_column("status").to_list() == ["applied"]
    [marker] = [line for line in done.stderr.splitlines() if line.startswith("LOADED:")]
    assert marker == "LOADED:", "the run imported httpx"
