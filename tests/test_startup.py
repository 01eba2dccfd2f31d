"""Quick commands start without the heavy libraries (issue 17): nothing timed, only what loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("polars", "pandera", "httpx", "aiohttp", "starlette", "rich", "structlog")
PROBE = """
import sys
from reconcile.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["--help"], ["--version"], ["operations"], ["runs"]])
def test_quick_commands_import_no_heavy_library(command: list[str], tmp_path: object) -> None:
    """`--help`, `--version`, `operations` and `runs` load none of polars, pandera, httpx,
    aiohttp, starlette, rich or structlog (checked in a fresh interpreter's sys.modules)."""
    args = [*command, "--state-dir", str(tmp_path)] if command == ["runs"] else command
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    [marker] = [line for line in done.stderr.splitlines() if line.startswith("HEAVY:")]
    assert marker == "HEAVY:", f"{command} imported {marker}"


COMMAND_MODULES = (
    "reconcile.ledger",
    "reconcile.operations",
    "reconcile.pipeline",
    "reconcile.audit",
)
LOADED = """
import sys
from reconcile.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED:" + ",".join(m for m in {modules!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["--help"], ["--version"], ["run", "--help"]])
def test_help_loads_the_parser_alone(command: list[str]) -> None:
    """`--help` and `--version` load no command's own modules (the ledger, the operations, the
    pipeline, the audit store): the CLI loads them when their command runs."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(modules=COMMAND_MODULES), *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    [marker] = [line for line in done.stderr.splitlines() if line.startswith("LOADED:")]
    assert marker == "LOADED:", f"{command} loaded {marker}"


def test_a_run_still_loads_what_it_needs() -> None:
    """The lazy modules are the real ones once used: an operation builds its pandera schema."""
    from reconcile.operations import get_operation

    schema = get_operation("purchase-history").schema(["acme"])
    assert type(schema).__module__.startswith("pandera")
