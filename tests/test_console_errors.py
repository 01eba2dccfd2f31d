"""The console's error messages name the file as it was uploaded, never where the server keeps
it (issue 26): a bad upload's error on the New correction page, in the real browser, and a
background run that stopped, on its run page."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Browser, expect

from reconcile import approval
from tests.console import RunningConsole, check_file, csrf_of, new_page, sign_in_page
from tests.helpers import SAMPLE

NAMES = ['Q3 fixes "final"', "订单"]
BAD_FILES = {
    ".csv missing a column": (".csv", b"community,colour\nacme,red\n", "required column"),
    ".csv not in any text encoding": (
        ".csv",
        b"community,purchaseHistoryID\nacme,\x81\x8d\n",
        "neither UTF-8 nor Windows-1252",
    ),
    ".xlsx that is no workbook": (".xlsx", b"not a zip file", "not a readable .xlsx workbook"),
}


def _no_server_path(text: str, running: RunningConsole) -> None:
    for path in (running.state_dir, running.state_dir.resolve(), running.console.files):
        assert str(path) not in text
    assert "console-files" not in text and "/tmp/" not in text


@pytest.mark.parametrize("stem", NAMES)
def test_a_bad_uploads_error_names_the_uploaded_file_never_a_server_path(
    browser: Browser, running: RunningConsole, stem: str
) -> None:
    """Alice uploads bad files named with quotes or in Chinese through the form: each error
    says what is wrong, names the file as she named it (once: no message inside a message),
    and shows no folder of the server's; nothing is kept as a run."""
    page = new_page(browser)
    sign_in_page(page, running.url, "alice")
    for what, (suffix, data, problem) in BAD_FILES.items():
        page.goto(f"{running.url}/new")
        name = stem + suffix
        page.get_by_label("Correction file").set_input_files(
            files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}]
        )
        page.get_by_role("button", name="Check file").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(problem)
        shown = alert.inner_text()
        assert shown.count(repr(name)) == 1, (what, shown)
        _no_server_path(page.content(), running)
    assert running.console.uploads() == []


def test_a_stopped_background_run_names_the_uploaded_file_never_a_server_path(
    running: RunningConsole,
) -> None:
    """An approved run whose stored copy went missing (a clean-up on the server) stops; its
    run page says why with the upload's own name, and no folder of the server's."""
    name = '订单 "Q3".csv'
    alice = running.client("alice")
    run_id = check_file(alice, SAMPLE / "purchase-history.csv", name)
    alice.post(f"/runs/{run_id}/submit", data={"csrf_token": csrf_of(alice.get("/new").text)})
    approval.approve(running.job.storage, run_id, note="ok", user="bob")
    upload, bob = running.console.upload(run_id), running.users.get("bob")
    assert upload is not None and bob is not None
    upload.stored.unlink()
    running.console.start(upload, bob)
    deadline = time.monotonic() + 60
    while (found := running.console.background(run_id)) is None or found.state == "running":
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.05)
    assert found.state == "failed" and found.error is not None
    assert repr(name) in found.error and "cannot open the input file" in found.error
    page = alice.get(f"/runs/{run_id}").text
    assert "Stopped" in page
    _no_server_path(page, running)
