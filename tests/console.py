"""Helpers for the web console's tests: a console over a real sandbox, served on 127.0.0.1,
users with known passwords; the browser tests drive a real Chromium (Debian's, found by
tests/needs.py) with Playwright."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from reconcile.database import Storage
from reconcile.job import Job, load_job
from reconcile.serving import ThreadServer
from reconcile.web.app import create_app
from reconcile.web.console import Console
from reconcile.web.context import Settings
from reconcile.web.security import Signer
from reconcile.web.users import UserStore
from tests.helpers import CREDENTIALS, credential_env, write_job
from tests.needs import axe_script

SCREENSHOTS = os.environ.get("RECONCILE_SCREENSHOTS_DIR")
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


PASSWORDS = {
    "alice": ("submitter", "alice-passphrase-1"),
    "carol": ("submitter", "carol-passphrase-2"),
    "bob": ("approver", "bob-passphrase-33"),
    "victor": ("viewer", "victor-passphrase-4"),
}


@dataclasses.dataclass
class RunningConsole:
    url: str
    console: Console
    users: UserStore
    job: Job
    state_dir: Path

    def client(self, user: str | None = None) -> httpx.Client:
        """An HTTP client (no browser), signed in as ``user`` when given."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        if user is not None:
            sign_in(client, user)
        return client


def environ() -> dict[str, str]:
    """The server's environment: the sandbox's credentials in the job's variables."""
    found = dict(os.environ)
    for community, credentials in CREDENTIALS.items():
        for credential, value in credentials.items():
            found[credential_env(credential, community)] = value
    return found


@dataclasses.dataclass
class ConsoleParts:
    console: Console
    users: UserStore
    job: Job
    signer: Signer


def console_parts(
    folder: Path, sandbox_url: str, operation: str = "purchase-history", **top: Any
) -> ConsoleParts:
    """A console over one job of ``operation`` (named as the operation; ``top`` adds job
    settings); its store is the ledger the test runs on (PostgreSQL when ``ledger_backend`` set
    RECONCILE_LEDGER_URL, else SQLite)."""
    storage = Storage(folder / "state", os.environ.get("RECONCILE_LEDGER_URL"))
    path = write_job(folder / f"{operation}.toml", sandbox_url, operation=operation, **top)
    job = dataclasses.replace(
        load_job(path), state_dir=storage.state_dir, ledger_url=storage.ledger_url
    )
    console = Console({operation: job}, storage, environ())
    users = UserStore(storage)
    for name, (role, password) in PASSWORDS.items():
        users.add(name, role, password)
    return ConsoleParts(console, users, job, Signer("test-secret-for-signing-cookies"))


def serve(parts: ConsoleParts, **settings: Any) -> Iterator[RunningConsole]:
    app = create_app(parts.console, parts.users, parts.signer, Settings(**settings))
    with ThreadServer(app) as server:
        yield RunningConsole(
            server.url, parts.console, parts.users, parts.job, parts.console.state_dir
        )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def post_sign_in(client: httpx.Client, user: str, password: str) -> httpx.Response:
    """The sign-in form filled in and posted, as a browser does (its CSRF token included)."""
    page = client.get("/login")
    return client.post(
        "/login", data={"csrf_token": csrf_of(page.text), "username": user, "password": password}
    )


def sign_in(client: httpx.Client, user: str) -> None:
    answer = post_sign_in(client, user, PASSWORDS[user][1])
    assert answer.status_code == 303, answer.text


def check_file(
    client: httpx.Client, path: Path, name: str | None = None, job: str = "purchase-history"
) -> str:
    """Upload ``path`` as the form does (for ``job``); the new run id."""
    token = csrf_of(client.get("/new").text)
    answer = client.post(
        "/check",
        data={"csrf_token": token, "job": job},
        files={"file": (name or path.name, path.read_bytes(), "text/csv")},
    )
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def new_page(browser: Browser, **options: Any) -> Page:
    """A page of its own (a new browser context: no cookies shared), 1280x800, downloads on."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, **options
    )
    return context.new_page()


def sign_in_page(page: Page, url: str, user: str) -> None:
    """Sign ``user`` in through the form, as a person does."""
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user][1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def accessible(page: Page, name: str) -> None:
    """axe-core's WCAG 2.1 A/AA rules on the page: no serious or critical violation; the page
    is also saved as a 1280x800 screenshot when RECONCILE_SCREENSHOTS_DIR is set."""
    page.add_script_tag(path=str(axe_script()))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG
    )
    serious = [
        (v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{name}: {serious}"
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


#: The header of the purchase-history files the analyst tests make.
HEADER = ["Community", "Purchase History ID", "Voucher Code", "Voucher Expiry Date"]


def two_job_parts(folder: Path, sandbox_url: str) -> ConsoleParts:
    """A console with two jobs of different operations (purchase-history, redemption-status)
    over one store (PostgreSQL when ``ledger_backend`` set RECONCILE_LEDGER_URL)."""
    storage = Storage(folder / "state", os.environ.get("RECONCILE_LEDGER_URL"))
    jobs = {}
    for name in ("purchase-history", "redemption-status"):
        path = write_job(folder / f"{name}.toml", sandbox_url, operation=name)
        jobs[name] = dataclasses.replace(
            load_job(path), state_dir=storage.state_dir, ledger_url=storage.ledger_url
        )
    console = Console(jobs, storage, environ())
    users = UserStore(storage)
    for user, (role, password) in PASSWORDS.items():
        users.add(user, role, password)
    return ConsoleParts(console, users, jobs["purchase-history"], Signer("test-secret-x"))


def check_in(page: Any, url: str, job: str, path: Path) -> None:
    """The New correction form filled in and sent in the browser (a Playwright page)."""
    page.goto(f"{url}/new")
    page.get_by_label("Job").select_option(job)
    page.get_by_label("Correction file").set_input_files(str(path))
    page.get_by_role("button", name="Check file").click()
