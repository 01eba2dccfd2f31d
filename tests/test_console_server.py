"""``reconcile serve`` and ``reconcile users`` as processes: user management, the demo, an
upload that would expand to hundreds of MB, and a server killed during a run."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from reconcile.approval import acting_user
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.console import PASSWORDS, check_file, csrf_of, environ, post_sign_in, sign_in
from tests.helpers import orders_csv, write_job


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _reconcile(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=environ(),
        check=False,
    )


def _add_users(state_dir: Path) -> None:
    for name, (role, password) in PASSWORDS.items():
        added = _reconcile(
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--state-dir",
            state_dir,
            stdin=password + "\n",
        )
        assert added.returncode == 0, added.stderr


@contextmanager
def _server(*args: str | Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "serve", "--port", str(port), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("the console did not start")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _client(url: str, user: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    if user:
        sign_in(client, user)
    return client


def test_users_are_added_listed_and_disabled_from_the_command_line(tmp_path: Path) -> None:
    """A short password is refused (exit 2, nothing stored); a password is read from stdin only;
    a disabled user cannot sign in and their session ends."""
    state = tmp_path / "state"
    short = _reconcile(
        "users",
        "add",
        "dana",
        "--role",
        "approver",
        "--password-stdin",
        "--state-dir",
        state,
        stdin="short\n",
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    no_stdin = _reconcile("users", "add", "dana", "--role", "approver", "--state-dir", state)
    assert no_stdin.returncode == 2 and "--password-stdin" in no_stdin.stderr
    _add_users(state)
    listed = _reconcile("users", "list", "--state-dir", state)
    assert "alice" in listed.stdout and "viewer" in listed.stdout
    assert "alice-passphrase-1" not in listed.stdout + listed.stderr
    job = write_job(tmp_path / "purchase-history.toml", state_dir=str(state))
    with _server("--job", job, "--state-dir", state) as (url, _):
        alice = _client(url, "alice")
        assert alice.get("/new").status_code == 200
        assert _reconcile("users", "disable", "alice", "--state-dir", state).returncode == 0
        assert alice.get("/new", follow_redirects=False).status_code == 303
        again = httpx.Client(base_url=url)
        assert post_sign_in(again, "alice", PASSWORDS["alice"][1]).status_code == 401


def _demo_passwords(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(2)]
    return dict(
        (line.split()[2], line.rsplit(" ", 1)[-1].strip()) for line in lines if "demo user" in line
    )


def _change_password(client: httpx.Client, current: str, new: str) -> httpx.Response:
    token = csrf_of(client.get("/password").text)
    form = {"csrf_token": token, "current_password": current}
    return client.post("/password", data={**form, "new_password": new, "confirm_password": new})


def test_the_demo_starts_with_two_users_and_every_operation(tmp_path: Path) -> None:
    """``serve --demo`` prints two one-time passwords: one signs in once, straight to "set your
    own password" (every other page and form refused until then); after the change the
    one-time password no longer works, also after a restart, and every operation is offered
    against the built-in sandbox."""
    new_password = "violet tractor summer lagoon"
    with _server("--demo", "--state-dir", tmp_path / "demo") as (url, process):
        passwords = _demo_passwords(process)
        assert set(passwords) == {"alice", "bob"}
        client = httpx.Client(base_url=url)
        signed = post_sign_in(client, "alice", passwords["alice"])
        assert signed.status_code == 303 and signed.headers["location"] == "/password"
        assert client.get("/new").headers["location"] == "/password"
        token = csrf_of(client.get("/password").text)
        assert client.post("/check", data={"csrf_token": token}).status_code == 403
        weak = _change_password(client, passwords["alice"], "password1234")
        assert weak.status_code == 400 and "too easy to guess" in weak.text
        assert _change_password(client, passwords["alice"], new_password).status_code == 303
        new = client.get("/new")
        assert new.status_code == 200
        for operation in ("purchase-history", "voucherify-order", "capillary-transaction"):
            assert f'value="{operation}"' in new.text
        again = httpx.Client(base_url=url)
        assert post_sign_in(again, "alice", passwords["alice"]).status_code == 401
    with _server("--demo", "--state-dir", tmp_path / "demo") as (url, process):
        client = httpx.Client(base_url=url)
        assert post_sign_in(client, "alice", passwords["alice"]).status_code == 401
        assert post_sign_in(client, "alice", new_password).status_code == 303


@pytest.mark.parametrize(
    "password",
    [" " * 12, "aaaaaaaaaaaa", "password1234", "qwertyuiopas", "123456789012", "iloveyou2026"],
)
def test_weak_passwords_are_refused(tmp_path: Path, password: str) -> None:
    """Blank, one repeated character, and passwords among the first guesses (zxcvbn's list of
    common passwords, keyboard walks, digit runs) are refused with the reason; nothing stored."""
    added = _reconcile(
        "users", "add", "dana", "--role", "approver", "--password-stdin",
        "--state-dir", tmp_path, stdin=password + "\n",
    )  # fmt: skip
    assert added.returncode == 2, added.stderr
    assert "password" in added.stderr
    listed = _reconcile("users", "list", "--state-dir", tmp_path)
    assert "dana" not in listed.stdout


def _bomb(path: Path, expanded_mb: int) -> Path:
    """An xlsx of a few hundred KB whose one sheet expands to ``expanded_mb`` MB."""
    row = b'<row><c t="inlineStr"><is><t>acme</t></is></c></row>' * 2000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(b"<worksheet><sheetData>")
            for _ in range(expanded_mb * 2**20 // len(row)):
                sheet.write(row)
            sheet.write(b"</sheetData></worksheet>")
    return path


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(v for v in status.splitlines() if v.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_a_decompression_bomb_upload_is_refused_and_memory_stays_bounded(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A ~1 MB xlsx that expands to ~630 MB is refused with a clear message before it is
    parsed; the server's peak memory grows by far less than the sheet's size."""
    bomb = _bomb(tmp_path / "bomb.xlsx", 630)
    assert bomb.stat().st_size < 3 * 2**20
    state = tmp_path / "state"
    _add_users(state)
    job = write_job(tmp_path / "purchase-history.toml", sandbox.url, state_dir=str(state))
    with _server("--job", job, "--state-dir", state) as (url, process):
        alice = _client(url, "alice")
        before = _peak_rss_mb(process.pid)
        token = csrf_of(alice.get("/new").text)
        answer = alice.post(
            "/check",
            data={"csrf_token": token, "job": "purchase-history"},
            files={"file": ("bomb.xlsx", bomb.read_bytes(), "application/octet-stream")},
        )
        assert answer.status_code == 400
        assert "expands to" in answer.text and "split it into smaller files" in answer.text
        assert _peak_rss_mb(process.pid) - before < 100


@pytest.mark.usefixtures("ledger_backend")
def test_a_server_killed_during_a_run_resumes_it_and_sends_nothing_applied_twice(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """SIGKILL mid-run leaves the ledger as a killed CLI run does; the next start resumes the
    run, its page says so, every row ends applied, and only requests that were in flight at the
    kill (repeatable PATCHes) reached the sandbox twice."""
    state = tmp_path / "state"
    _add_users(state)
    job = write_job(
        tmp_path / "purchase-history.toml", sandbox.url, state_dir=str(state), concurrency=2
    )
    rows = [("acme", order_id("acme", n)) for n in range(40)]
    source = orders_csv(tmp_path / "orders.csv", rows)
    with _server("--job", job, "--state-dir", state) as (url, process):
        alice = _client(url, "alice")
        run_id = check_file(alice, source)
        alice.post(f"/runs/{run_id}/submit", data={"csrf_token": csrf_of(alice.get("/new").text)})
        sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.15)]
        bob = _client(url, "bob")
        token = csrf_of(bob.get(f"/runs/{run_id}").text)
        bob.post(f"/runs/{run_id}/approve", data={"csrf_token": token, "note": "ok"})
        deadline = time.monotonic() + 20
        while sum(r["method"] == "PATCH" for r in sandbox.state.requests) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    sent_before = sum(r["method"] == "PATCH" for r in sandbox.state.requests)
    assert sent_before < 40
    with _server("--job", job, "--state-dir", state) as (url, process):
        bob = _client(url, "bob")
        deadline = time.monotonic() + 60
        while "Download results" not in (page := bob.get(f"/runs/{run_id}").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.2)
        assert "the server stopped during this run; it was resumed" in page
        counts = dict(
            (label, int(n))
            for n, label in re.findall(
                r'class="n">(\d+)</span> <span class="label">([a-z ]+)<', page
            )
        )
        assert counts.get("applied", 0) + counts.get("already applied", 0) == 40, counts
        assert counts.get("already applied", 0) >= 1  # the resumed run skipped what was done
    patches = [r["path"] for r in sandbox.state.requests if r["method"] == "PATCH"]
    twice = {p for p in set(patches) if patches.count(p) > 1}
    assert len(set(patches)) == 40
    assert len(twice) <= 2  # at most the requests in flight when it was killed (concurrency 2)


@pytest.mark.usefixtures("ledger_backend")
def test_history_shows_command_line_runs_beside_console_runs(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A dry run made with the CLI on the same job appears in the console's History."""
    state = tmp_path / "state"
    _add_users(state)
    job = write_job(tmp_path / "purchase-history.toml", sandbox.url, state_dir=str(state))
    source = orders_csv(tmp_path / "from-the-shell.csv", [("acme", order_id("acme", 1))])
    ran = _reconcile("run", source, "--job", job, "--dry-run", "--out", tmp_path / "o.csv")
    assert ran.returncode == 0, ran.stderr
    with _server("--job", job, "--state-dir", state) as (url, _):
        history = _client(url, "victor").get("/history").text
        assert "from-the-shell.csv" in history and "Check (dry run)" in history
        assert acting_user() in history  # the CLI run's maker
