"""The README cannot drift from the code: every CLI option and operation column is documented."""

from __future__ import annotations

import re

from reconcile.cli_parser import build_parser
from reconcile.operations import OPERATIONS
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _options() -> set[str]:
    options: set[str] = set()
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for sub in action.choices.values():
            for sub_action in sub._actions:
                options.update(
                    o for o in sub_action.option_strings if o.startswith("--") and o != "--help"
                )
    return options


def test_every_cli_option_is_in_the_readme() -> None:
    missing = sorted(o for o in _options() if o not in README)
    assert not missing


def test_every_operation_column_is_in_the_readme() -> None:
    for operation in OPERATIONS.values():
        assert f"### {operation.name} columns" in README
        for column in operation.columns:
            assert re.search(rf"\| `{column.name}` \|", README), column.name


def test_the_two_setup_commands_are_there() -> None:
    assert (
        "uv run reconcile run sample_data/purchase-history.csv --job jobs/purchase-history.example.toml --sandbox"
        in README
    )
    assert "uv run pytest" in README


def test_job_settings_are_declared_once_and_documented_from_that_declaration() -> None:
    """The README's job file and `run --help` print the settings from `Job`'s declarations, so
    a setting added there is parsed, checked and documented without a second list to edit."""
    from reconcile.job import example_toml, parse_job, settings

    assert example_toml() in README
    assert (
        example_toml() in build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    )  # type: ignore[union-attr]
    declared = {f.name for f in settings()}
    assert {"rate_per_second", "require_approval", "notify_url", "options"} <= declared
    # Every declared setting is accepted by the parser with its documented example/default.
    job = parse_job(
        {"operation": "purchase-history", "base_url": "https://api.example.com", "guard_window": 7}
    )
    assert job.guard_window == 7 and job.settle_seconds == 60.0
