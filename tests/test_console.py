"""The web console in a real browser (Debian's Chromium through Playwright) and over real HTTP:
the whole flow of two users, roles, security guards and accessibility (axe-core)."""

from __future__ import annotations

import html
import io
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from playwright.sync_api import Browser, Page, expect

from reconcile import approval
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from reconcile.web.users import MAX_FAILURES
from tests.console import (
    AXE,
    PASSWORDS,
    RunningConsole,
    check_file,
    console_parts,
    csrf_of,
    post_sign_in,
    serve,
)
from tests.helpers import SAMPLE

SCREENSHOTS = os.environ.get("RECONCILE_SCREENSHOTS_DIR")
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Browser:
    """The module's Chromium (conftest's ``chromium``)."""
    return chromium


@pytest.fixture
def running(
    tmp_path: Path, sandbox: SandboxServer, ledger_backend: str | None
) -> Iterator[RunningConsole]:
    """The console on each ledger: SQLite in its state dir, then PostgreSQL."""
    parts = console_parts(tmp_path, sandbox.url)
    yield from serve(parts)
    parts.console.close()
    parts.users.close()


def _page(browser: Browser, **options: Any) -> Page:
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, **options
    )
    return context.new_page()


def _sign_in(page: Page, url: str, user: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user][1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def _accessible(page: Page, name: str) -> None:
    """axe-core's WCAG 2.1 A/AA rules on the page: no serious or critical violation; the page
    is also saved as a 1280x800 screenshot when RECONCILE_SCREENSHOTS_DIR is set."""
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: .ci/run installs it with npm")
    page.add_script_tag(path=str(AXE))
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


def _corrected(errors_file: Path, folder: Path) -> Path:
    """What a finance user does with the errors file: fix every row, keep the rest as it is."""
    frame = pl.read_csv(errors_file, infer_schema=False, encoding="utf8-lossy")
    fixed = frame.with_columns(
        pl.lit("acme").alias("Community"),
        pl.Series("Purchase History ID", [order_id("acme", n) for n in range(frame.height)]),
        pl.lit("Collect at the front desk").alias("Redemption Instructions"),
        pl.lit(None, pl.String).alias("Voucher Code"),
        pl.lit(None, pl.String).alias("Voucher Expiry Date"),
    )
    out = folder / "purchase-history-fixed.csv"
    fixed.write_csv(out)
    return out


def test_two_users_check_fix_submit_approve_and_watch_the_run(
    browser: Browser, running: RunningConsole, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Alice signs in, uploads the mistakes sample, sees the bad cells, downloads the errors
    file, fixes it and uploads it again, submits; she cannot approve her own plan. Bob approves
    it with a note; the run's live progress shows, then its counts and results, which say every
    row was applied, and the sandbox saw each request once. Every page passes axe-core."""
    alice = _page(browser, bypass_csp=True)
    _sign_in(alice, running.url, "alice")
    _accessible(alice, "1-new-correction")
    alice.get_by_label("Job").select_option("purchase-history")
    alice.get_by_label("Correction file").set_input_files(
        str(SAMPLE / "purchase-history-mistakes.csv")
    )
    alice.get_by_role("button", name="Check file").click()
    expect(alice.get_by_role("heading", name="Rows with errors")).to_be_visible()
    errors = alice.get_by_role("table", name=re.compile("Problems by row"))
    expect(errors.get_by_role("row")).to_have_count(19)  # header + 18 problems of 16 rows
    expect(errors).to_contain_text("'2026-12-31' is written year first")
    expect(errors.locator(".bad-cell").first).to_contain_text("SPRING-2026-0003")
    expect(alice.get_by_role("button", name="Submit for approval")).to_be_visible()  # 1 row ok
    _accessible(alice, "2-check-result")

    with alice.expect_download() as download:
        alice.get_by_role("link", name="Download errors file").click()
    errors_file = tmp_path / "errors.csv"
    download.value.save_as(errors_file)
    assert pl.read_csv(errors_file, infer_schema=False).height == 16

    alice.get_by_role("link", name="New correction").click()
    alice.get_by_label("Correction file").set_input_files(str(_corrected(errors_file, tmp_path)))
    alice.get_by_role("button", name="Check file").click()
    expect(alice.locator(".stat.s-would_apply .n")).to_have_text("16")
    expect(alice.get_by_role("heading", name="Rows with errors")).to_have_count(0)
    plan_url = alice.url
    alice.get_by_role("button", name="Submit for approval").click()
    expect(alice.get_by_text("Submitted for approval")).to_be_visible()
    expect(alice.get_by_role("button", name="Approve")).to_have_count(0)

    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.4)]
    bob = _page(browser, bypass_csp=True)
    _sign_in(bob, running.url, "bob")
    bob.get_by_role("link", name="Approvals").click()
    _accessible(bob, "3-approvals")
    bob.get_by_role("link", name=re.compile("Review plan.*by alice")).click()
    assert bob.url == plan_url
    _accessible(bob, "4-plan-to-approve")
    bob.get_by_label("Note").fill("Checked against the ticket")
    bob.get_by_role("button", name="Approve").click()
    live = bob.get_by_role("table", name="Live progress per community")
    expect(live).to_be_visible()
    expect(live.get_by_role("progressbar")).to_have_count(1)
    _accessible(bob, "5-run-in-progress")
    expect(bob.get_by_role("link", name="Download results")).to_be_visible(timeout=30_000)
    expect(bob.locator(".stat.s-applied .n")).to_have_text("16")
    _accessible(bob, "6-run-finished")

    with bob.expect_download() as download:
        bob.get_by_role("link", name="Download results").click()
    results = pl.read_csv(download.value.path(), infer_schema=False)
    assert results.get_column("status").to_list() == ["applied"] * 16
    applied = [r for r in sandbox.state.requests if r["method"] == "PATCH"]
    assert len(applied) == 16 and len({r["path"] for r in applied}) == 16
    expect(bob.get_by_role("table", name=re.compile("audit chain"))).to_contain_text("approve")
    with bob.context.expect_page() as report:
        bob.get_by_role("link", name="Open report").click(modifiers=["Control"])
    assert report.value is not None

    bob.get_by_role("link", name="History").click()
    history = bob.get_by_role("table", name="Runs, newest first")
    expect(history).to_contain_text("alice")
    expect(history).to_contain_text("bob")
    _accessible(bob, "7-history")

    assert approval.verify(running.console.storage) == []  # the chain holds, with actions
    with approval.store(running.console.storage) as audit:
        done = [(a["user"], a["action"]) for a in audit.actions(plan_url.rsplit("/", 1)[-1])]
        signed_in = {a["user"] for a in audit.actions("") if a["action"] == "sign-in"}
    for step in [("alice", "upload"), ("alice", "check"), ("alice", "submit"), ("bob", "approve")]:
        assert step in done
    assert ("bob", "run") in done and ("bob", "download") in done
    assert signed_in == {"alice", "bob"}


def test_sign_in_page_is_accessible_and_works_with_the_keyboard_alone(
    browser: Browser, running: RunningConsole
) -> None:
    """The sign-in page passes axe-core; typing and Tab/Enter alone sign in, and Tab reaches
    the navigation links in order."""
    page = _page(browser, bypass_csp=True)
    page.goto(f"{running.url}/login")
    _accessible(page, "0-sign-in")
    page.keyboard.type("alice")  # the username field has focus on arrival
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS["alice"][1])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New correction")).to_be_visible()
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "New correction"


def test_a_cell_with_markup_is_shown_as_text_and_never_runs(
    browser: Browser, running: RunningConsole, tmp_path: Path
) -> None:
    """``<script>`` and ``<img onerror>`` cells appear as their text in the error table, and no
    script of theirs runs (autoescaping, with the CSP behind it)."""
    source = tmp_path / "xss.csv"
    source.write_text(
        "community,purchaseHistoryID,redemptionInstructions\n"
        "acme,<script>window.pwned=1</script>,x\n"
        'acme,<img src=x onerror="window.pwned=2">,x\n',
        encoding="utf-8",
    )
    page = _page(browser)
    _sign_in(page, running.url, "alice")
    page.get_by_label("Correction file").set_input_files(str(source))
    page.get_by_role("button", name="Check file").click()
    table = page.get_by_role("table", name=re.compile("Problems by row"))
    expect(table).to_contain_text("<script>window.pwned=1</script>")
    expect(table).to_contain_text('<img src=x onerror="window.pwned=2">')
    assert page.evaluate("window.pwned") is None
    assert page.locator("table img").count() == 0


def test_roles_decide_what_each_user_sees(browser: Browser, running: RunningConsole) -> None:
    """A viewer's navigation has only History, and the upload and approval pages refuse them
    (403); a submitter has no Approvals link."""
    viewer = _page(browser, bypass_csp=True)
    _sign_in(viewer, running.url, "victor")
    nav = viewer.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["History"])
    assert viewer.goto(f"{running.url}/new").status == 403  # type: ignore[union-attr]
    assert viewer.goto(f"{running.url}/approvals").status == 403  # type: ignore[union-attr]
    _accessible(viewer, "8-not-allowed")
    submitter = _page(browser)
    _sign_in(submitter, running.url, "alice")
    nav = submitter.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["New correction", "History"])


class _CountingHasher:
    """The store's argon2 hasher, counting the passwords it verifies."""

    def __init__(self, hasher: Any, checked: list[str]) -> None:
        self.hasher, self.checked = hasher, checked

    def hash(self, password: str) -> str:
        return str(self.hasher.hash(password))

    def verify(self, stored: str, password: str) -> bool:
        self.checked.append(password)
        return bool(self.hasher.verify(stored, password))


class TestGuards:
    """The server refuses what the pages do not offer, whatever a client sends."""

    def test_a_post_without_the_csrf_token_is_403(self, running: RunningConsole) -> None:
        client = running.client("alice")
        run_id = check_file(client, SAMPLE / "purchase-history.csv")
        assert client.post(f"/runs/{run_id}/submit").status_code == 403
        assert client.post(f"/runs/{run_id}/submit", data={"csrf_token": "x"}).status_code == 403
        anonymous = running.client()
        assert anonymous.post("/login", data={"username": "alice"}).status_code == 403

    def test_viewer_posts_and_approving_ones_own_plan_are_403(
        self, running: RunningConsole
    ) -> None:
        alice = running.client("alice")
        run_id = check_file(alice, SAMPLE / "purchase-history.csv")
        token = csrf_of(alice.get(f"/runs/{run_id}").text)
        assert alice.post(f"/runs/{run_id}/submit", data={"csrf_token": token}).status_code == 303
        own = alice.post(f"/runs/{run_id}/approve", data={"csrf_token": token})
        assert own.status_code == 403  # alice is a submitter, and the maker
        viewer = running.client("victor")
        token = csrf_of(viewer.get(f"/runs/{run_id}").text)
        for action in ("submit", "approve", "reject"):
            answer = viewer.post(f"/runs/{run_id}/{action}", data={"csrf_token": token})
            assert answer.status_code == 403, action
        assert viewer.post("/check", data={"csrf_token": token}).status_code == 403

    def test_an_approver_cannot_approve_their_own_plan(self, running: RunningConsole) -> None:
        bob = running.client("bob")
        run_id = check_file(bob, SAMPLE / "purchase-history.csv")
        page = bob.get(f"/runs/{run_id}").text
        token = csrf_of(page)
        bob.post(f"/runs/{run_id}/submit", data={"csrf_token": token})
        assert "Approve</button>" not in bob.get(f"/runs/{run_id}").text
        answer = bob.post(f"/runs/{run_id}/approve", data={"csrf_token": token})
        assert answer.status_code == 403
        with approval.store(running.job.storage) as audit:
            plan = audit.plan(run_id)
        assert plan is not None and plan.decision is None  # nothing recorded

    def test_another_submitters_run_is_404(self, running: RunningConsole) -> None:
        alice = running.client("alice")
        run_id = check_file(alice, SAMPLE / "purchase-history.csv")
        carol = running.client("carol")
        for path in ("", "/progress", "/download/errors.csv", "/download/requests.csv"):
            assert carol.get(f"/runs/{run_id}{path}").status_code == 404, path
        assert carol.get("/runs/no-such-run").status_code == 404
        assert running.client("victor").get(f"/runs/{run_id}").status_code == 200

    def test_upload_names_are_never_paths(self, running: RunningConsole) -> None:
        """``../`` and absolute names are shown as given and stored under generated names."""
        alice = running.client("alice")
        names = ["../../escape.csv", "/etc/cron.d/evil.csv", "..\\..\\win.csv"]
        for name in names:
            run_id = check_file(alice, SAMPLE / "purchase-history.csv", name=name)
            assert html.escape(name) in alice.get(f"/runs/{run_id}").text
        stored = sorted(p.name for p in (running.state_dir / "console-files").iterdir())
        assert all(
            re.fullmatch(
                r"[0-9a-f]{32}(\.check(\.errors|\.manifest|\.report)?)?\.(csv|json|html)", n
            )
            for n in stored
        ), stored
        assert not (running.state_dir.parent / "escape.csv").exists()
        assert not Path("/etc/cron.d/evil.csv").exists()

    def test_sign_in_is_throttled_and_passwords_never_show(
        self, running: RunningConsole, capfd: pytest.CaptureFixture[str]
    ) -> None:
        client = running.client()
        for _ in range(5):
            assert post_sign_in(client, "bob", "nope-nope-nope").status_code == 401
        right = post_sign_in(client, "bob", PASSWORDS["bob"][1])
        assert right.status_code == 429 and "Too many failed sign-ins" in right.text
        signed = running.client("alice")
        pages = [signed.get(p).text for p in ("/new", "/history")]
        logs = capfd.readouterr()
        for secret in (PASSWORDS["alice"][1], PASSWORDS["bob"][1], "nope-nope-nope"):
            assert secret not in logs.out + logs.err
            assert all(secret not in text for text in pages)

    def test_100_guesses_at_once_check_at_most_the_limit_and_lock_no_one_elsewhere_out(
        self, running: RunningConsole
    ) -> None:
        """100 wrong sign-ins for bob sent at once from one address: each is counted before the
        password check, so argon2 checks at most MAX_FAILURES of them and the rest are 429.
        Bob, from another address (127.0.0.2), still signs in: a stranger cannot lock him out;
        from the guessing address, once the limit is reached, even his right password is 429."""
        checked: list[str] = []
        running.users._hasher = _CountingHasher(running.users._hasher, checked)  # type: ignore[assignment]
        tokens: list[tuple[httpx.Client, str]] = []
        for _ in range(100):
            client = running.client()
            tokens.append((client, csrf_of(client.get("/login").text)))
        checked.clear()

        def guess(pair: tuple[httpx.Client, str]) -> int:
            client, token = pair
            form = {"csrf_token": token, "username": "bob", "password": "wrong-guess-123"}
            return client.post("/login", data=form).status_code

        with ThreadPoolExecutor(max_workers=100) as pool:
            codes = Counter(pool.map(guess, tokens))
        assert len(checked) <= MAX_FAILURES, len(checked)
        assert codes[401] == len(checked) and codes[429] == 100 - len(checked)
        # Racing attempts may throttle one another (each sees the others' rows and takes its own
        # back), so the burst can check fewer than the limit; guesses one at a time fill it up.
        for _ in range(MAX_FAILURES - len(checked)):
            one = running.client()
            assert guess((one, csrf_of(one.get("/login").text))) == 401
        assert len(checked) == MAX_FAILURES
        elsewhere = httpx.Client(
            base_url=running.url,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
            timeout=30,
        )
        assert post_sign_in(elsewhere, "bob", PASSWORDS["bob"][1]).status_code == 303
        same_place = running.client()
        assert post_sign_in(same_place, "bob", PASSWORDS["bob"][1]).status_code == 429

    def test_sign_out_ends_the_session_on_the_server(self, running: RunningConsole) -> None:
        alice = running.client("alice")
        cookie = alice.cookies.get("reconcile_session")
        token = csrf_of(alice.get("/new").text)
        assert alice.post("/logout", data={"csrf_token": token}).status_code == 303
        replay = running.client()
        replay.cookies.set("reconcile_session", cookie or "")
        assert replay.get("/new").status_code == 303  # back to the sign-in page

    def test_security_headers_and_cookie_flags(self, running: RunningConsole) -> None:
        client = running.client()
        page = client.get("/login")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        answer = post_sign_in(client, "alice", PASSWORDS["alice"][1])
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie

    def test_an_upload_over_the_limit_is_413(self, tmp_path: Path, sandbox: SandboxServer) -> None:
        parts = console_parts(tmp_path, sandbox.url)
        for running in serve(parts, max_upload_mb=0.05):
            alice = running.client("alice")
            token = csrf_of(alice.get("/new").text)
            big = io.BytesIO(b"community,purchaseHistoryID\n" + b"acme,ORDX\n" * 20_000)
            answer = alice.post(
                "/check",
                data={"csrf_token": token, "job": "purchase-history"},
                files={"file": ("big.csv", big, "text/csv")},
            )
            assert answer.status_code == 413
            assert "larger than 0.05 MB" in answer.text
            assert not list((running.state_dir / "console-files").iterdir())


def test_an_sso_header_is_believed_only_from_the_trusted_proxy(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """With --trusted-proxy 127.0.0.1 the proxy's user header signs its user in (a session with
    a CSRF token follows) and, when it names someone else, ends the cookie's session (a new SSO
    user on the same browser never acts as the previous one); from an untrusted address the
    same header is ignored."""
    parts = console_parts(tmp_path, sandbox.url)
    header = {"X-Remote-User": "bob", "X-Forwarded-Proto": "https"}
    for running in serve(parts, trust_user_header="X-Remote-User", trusted_proxy="127.0.0.1"):
        client = running.client()
        page = client.get("/approvals", headers=header)
        assert page.status_code == 200 and "bob" in page.text
        assert "Secure" in page.headers["set-cookie"]  # the proxy said https
        # The header decides who the request is: bob's cookie is ended, not believed.
        alice = client.get("/approvals", headers={**header, "X-Remote-User": "alice"})
        assert alice.status_code == 403  # alice is a submitter: bob's session did not win
        assert (
            client.get("/approvals", headers={**header, "X-Remote-User": "bob"}).status_code == 200
        )
        unknown = client.get("/approvals", headers={"X-Remote-User": "mallory"})
        assert unknown.status_code == 303  # no user of that name: nobody, whatever the cookie
        fresh = running.client()
        assert fresh.get("/approvals", headers={"X-Remote-User": "mallory"}).status_code == 303
    for running in serve(parts, trust_user_header="X-Remote-User", trusted_proxy="10.9.9.9"):
        assert running.client().get("/approvals", headers=header).status_code == 303


def test_a_rejection_needs_a_note_and_is_shown_and_audited(running: RunningConsole) -> None:
    """An approver rejects with a note (without one: 400, nothing recorded); the plan page then
    says who rejected it and why, nothing is sent, and the audit log lists the rejection."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv")
    token = csrf_of(alice.get(f"/runs/{run_id}").text)
    alice.post(f"/runs/{run_id}/submit", data={"csrf_token": token})
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{run_id}").text)
    assert bob.post(f"/runs/{run_id}/reject", data={"csrf_token": token}).status_code == 400
    answer = bob.post(f"/runs/{run_id}/reject", data={"csrf_token": token, "note": "wrong file"})
    assert answer.status_code == 303
    page = alice.get(f"/runs/{run_id}").text
    assert "Rejected by bob" in page and "wrong file" in page
    assert "Submit for approval</button>" not in page
    with approval.store(running.job.storage) as audit:
        actions = [(a["user"], a["action"], a["detail"]) for a in audit.actions(run_id)]
    assert ("bob", "reject", "wrong file") in actions
    assert not [r for r in running.console.history() if not r["dry_run"]]  # nothing ran


def test_an_approver_decides_with_the_keyboard_alone(
    browser: Browser, running: RunningConsole
) -> None:
    """From the approval queue to a decision with Tab, typing and Enter only: the links, the
    Note field and the Approve button are all reachable and operable from the keyboard."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv")
    alice.post(f"/runs/{run_id}/submit", data={"csrf_token": csrf_of(alice.get("/new").text)})
    page = _page(browser)
    _sign_in(page, running.url, "bob")
    page.goto(f"{running.url}/approvals")
    review = page.get_by_role("link", name=re.compile("Review plan"))
    for _ in range(30):  # Tab until the review link has focus
        page.keyboard.press("Tab")
        if review.evaluate("link => link === document.activeElement"):
            break
    page.keyboard.press("Enter")
    expect(page.get_by_label("Note")).to_be_visible()
    note = page.get_by_label("Note")
    for _ in range(40):
        page.keyboard.press("Tab")
        if note.evaluate("field => field === document.activeElement"):
            break
    page.keyboard.type("Checked with the keyboard")
    page.keyboard.press("Tab")  # the Approve button
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Approve"
    page.keyboard.press("Enter")
    decision = page.locator(".alert.ok")
    expect(decision).to_contain_text("Approved by bob")
    expect(decision).to_contain_text("Checked with the keyboard")


def test_an_expired_session_signs_nobody_in(tmp_path: Path) -> None:
    """A session past its expiry is refused (and removed); a live one names its user."""
    from reconcile.web.users import UserStore

    users = UserStore(tmp_path)
    try:
        alice = users.add("alice", "submitter", PASSWORDS["alice"][1])
        live, stale = users.open_session(alice), users.open_session(alice, hours=-1)
        found = users.session(live)
        assert found is not None and found.user.name == "alice"
        assert users.session(stale) is None
        assert users.db.one("SELECT COUNT(*) FROM sessions") == (1,)
    finally:
        users.close()


def test_only_a_submitted_plan_is_decided_and_a_withdrawn_one_never(
    sandbox: SandboxServer, running: RunningConsole
) -> None:
    """An approver's POST on a checked but unsubmitted plan is 409 (approve and reject): nothing
    recorded, nothing sent. After the maker submits and withdraws it, approving is 409 too."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv")
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{run_id}").text)
    for action, data in (("approve", {}), ("reject", {"note": "no"})):
        answer = bob.post(f"/runs/{run_id}/{action}", data={"csrf_token": token, **data})
        assert answer.status_code == 409, action
        assert "never submitted" in html.unescape(answer.text)
    alice_token = csrf_of(alice.get(f"/runs/{run_id}").text)
    alice.post(f"/runs/{run_id}/submit", data={"csrf_token": alice_token})
    assert "Withdraw from approval</button>" in alice.get(f"/runs/{run_id}").text
    answer = alice.post(f"/runs/{run_id}/withdraw", data={"csrf_token": alice_token})
    assert answer.status_code == 303
    page = bob.get(f"/runs/{run_id}").text
    assert "Withdrawn by alice" in page and "Approve</button>" not in page
    assert run_id not in bob.get("/approvals").text
    answer = bob.post(f"/runs/{run_id}/approve", data={"csrf_token": token})
    assert answer.status_code == 409 and "withdrawn by alice" in html.unescape(answer.text)
    with approval.store(running.job.storage) as audit:
        plan = audit.plan(run_id)
        actions = [a["action"] for a in audit.actions(run_id)]
    assert plan is not None and plan.decision is None
    assert "approve" not in actions and "reject" not in actions and "withdraw" in actions
    assert sandbox.state.requests == []
    assert not [r for r in running.console.history() if not r["dry_run"]]


def test_the_maker_withdraws_a_submitted_plan_in_the_browser(
    browser: Browser, running: RunningConsole
) -> None:
    """The maker sees a Withdraw button on their submitted plan; after it the page says who
    withdrew it and offers nothing more; the page passes axe-core."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv")
    page = _page(browser, bypass_csp=True)  # axe-core is injected as a script
    _sign_in(page, running.url, "alice")
    page.goto(f"{running.url}/runs/{run_id}")
    page.get_by_role("button", name="Submit for approval").click()
    page.get_by_role("button", name="Withdraw from approval").click()
    expect(page.get_by_role("status").filter(has_text="Withdrawn by alice")).to_be_visible()
    assert page.get_by_role("button", name="Submit for approval").count() == 0
    _accessible(page, "withdrawn plan")


@pytest.mark.parametrize(
    "name", ["订单.csv", "Ελλάδα заказ.csv", 'Q3 "fixes".csv', 'a";x=".html.csv', "naïve café.csv"]
)
def test_downloads_keep_any_file_name(browser: Browser, running: RunningConsole, name: str) -> None:
    """A file named in any script, or with quotes, is checked, submitted, approved and run;
    its errors file, planned requests and results download in the real browser under the
    upload's own name with the right suffix (RFC 6266 filename*, an ASCII fallback beside it)."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv", name)
    token = csrf_of(alice.get(f"/runs/{run_id}").text)
    alice.post(f"/runs/{run_id}/submit", data={"csrf_token": token})
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{run_id}").text)
    assert bob.post(f"/runs/{run_id}/approve", data={"csrf_token": token}).status_code == 303
    deadline = time.monotonic() + 60
    while (found := running.console.background(run_id)) is None or found.state == "running":
        assert time.monotonic() < deadline, "the approved run did not end"
        time.sleep(0.05)
    stem = name.removesuffix(".csv").replace('"', "_")  # no file system takes every quote
    page = _page(browser)
    _sign_in(page, running.url, "alice")
    page.goto(f"{running.url}/runs/{run_id}")
    for link, suffix in (
        ("Download errors file", ".errors.csv"),
        ("Download planned requests", ".planned-requests.csv"),
        ("Download results", ".results.csv"),
    ):
        with page.expect_download() as download:
            page.get_by_role("link", name=link).click()
        assert download.value.suggested_filename == stem + suffix, link
    answer = alice.get(f"/runs/{run_id}/download/requests.csv")
    disposition = answer.headers["content-disposition"]
    assert disposition.isascii() and "filename*=utf-8''" in disposition
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.endswith(".planned-requests.csv") and fallback.isascii()


def test_an_unknown_download_kind_is_404_and_not_recorded(running: RunningConsole) -> None:
    """A made-up or forged kind (a newline and a fake audit line, 8,000 characters) is 404, and
    the audit chain records nothing of it."""
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv")
    forged = "errors.csv%0A2026-12-06 21:40:00 UTC | bob | approve | looks fine"
    for kind in (forged, "x" * 8000, "..%2F..%2Fetc%2Fpasswd", "report.html"):
        assert alice.get(f"/runs/{run_id}/download/{kind}").status_code == 404
    with approval.store(running.job.storage) as audit:
        actions = audit.actions(run_id)
    assert [a["action"] for a in actions] == ["upload", "check"]


def test_a_forged_audit_line_never_renders_as_an_entry_of_its_own(
    browser: Browser, running: RunningConsole
) -> None:
    """A file name and an approval note that carry a line break and a fake entry are recorded
    as data: the run page's audit table has one row per action, four cells each, and no row
    claims an approval nobody made."""
    fake = "\n2026-12-06 21:40:00 UTC | carol | approve | looks fine"
    alice = running.users.get("alice")
    assert alice is not None
    upload = running.console.check(
        "purchase-history",
        f"fixes{fake}.csv",
        (SAMPLE / "purchase-history.csv").read_bytes(),
        alice,
    )
    running.console.submit(upload, alice)
    bob = running.client("bob")
    token = csrf_of(bob.get(f"/runs/{upload.run_id}").text)
    answer = bob.post(
        f"/runs/{upload.run_id}/reject", data={"csrf_token": token, "note": f"no{fake}"}
    )
    assert answer.status_code == 303
    page = _page(browser)
    _sign_in(page, running.url, "alice")
    page.goto(f"{running.url}/runs/{upload.run_id}")
    rows = page.get_by_role("table", name=re.compile("audit chain")).locator("tbody tr")
    with approval.store(running.job.storage) as audit:
        recorded = audit.actions(upload.run_id)
    expect(rows).to_have_count(len(recorded))
    cells = [[c.inner_text() for c in row.locator("td").all()] for row in rows.all()]
    assert all(len(c) == 4 for c in cells)
    assert not [c for c in cells if c[1] == "carol"]
    assert [c[2] for c in cells] == [a["action"] for a in recorded]
    assert any("\\n2026-12-06" in c[3] for c in cells)  # shown, escaped, inside its own cell


def test_a_one_time_password_leads_to_setting_ones_own(
    browser: Browser, running: RunningConsole
) -> None:
    """A user given a one-time password signs in to "Set your own password" (the page passes
    axe-core), a weak choice is refused with the reason, a good one leads on to the console."""
    running.users.add("dana", "approver", "ruby-kettle-41-orbit", one_time=True)
    page = _page(browser, bypass_csp=True)
    page.goto(f"{running.url}/login")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill("ruby-kettle-41-orbit")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Set your own password")).to_be_visible()
    _accessible(page, "set-password")
    for new in ("password1234", "maple-otter-cinema-drift"):
        page.get_by_label("Current password").fill("ruby-kettle-41-orbit")
        page.get_by_label("New password", exact=True).fill(new)
        page.get_by_label("New password again").fill(new)
        page.get_by_role("button", name="Save password").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert not page.url.endswith("/password")
    assert running.users.authenticate("dana", "maple-otter-cinema-drift", "127.0.0.9") is not None
