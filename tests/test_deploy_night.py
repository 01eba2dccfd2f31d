"""One night of deploy/cronjob.yaml, its pods run with podman exactly as the manifest says (see
tests/pods.py), against the sandbox and a real PostgreSQL ledger on 127.0.0.1: every community's
rows applied by one pod, each request once in the sandbox's log, a second night sends nothing,
and a pod killed mid-run resumes with nothing sent twice."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from reconcile.ledger_commands import migrate_url
from reconcile.sandbox import SandboxServer
from reconcile.sandbox.seeding import order_id
from reconcile.sandbox.state import FaultRule
from tests.helpers import KEYS, orders_csv
from tests.pods import Night, podman
from tests.postgres import USER, PostgresServer

ROWS = 12


@pytest.fixture
def night(image: str, postgres: PostgresServer, sandbox: SandboxServer, tmp_path: Path) -> Night:
    """The manifest's pods with the Secret's keys given as values: the ledger URL (no password
    in it), the password, and one API key per community."""
    database = f"night_{os.getpid()}_{time.monotonic_ns()}"
    migrate_url(postgres.new_database(database))
    secrets = {
        "ledger-url": f"postgresql://{USER}@127.0.0.1:{postgres.port}/{database}",
        "ledger-password": postgres.password,
        **{f"returning-ai-key-{name}": key for name, key in KEYS.items()},
    }
    made = Night(image, secrets, tmp_path, sandbox.url)
    assert made.completions == 2
    return made


def _drop(night: Night, communities: list[str], rows: int = ROWS) -> Path:
    """Tonight's file in the inbox of the data volume, older than settle_seconds."""
    inbox = night.volume("data") / "inbox"
    inbox.mkdir(exist_ok=True)
    os.chown(inbox, 10001, -1)
    pairs = [(c, order_id(c, n)) for n in range(1, rows + 1) for c in communities]
    path = orders_csv(inbox / "orders.csv", pairs)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    return path


def _run_night(night: Night) -> list[str]:
    """All pods of the night side by side (parallelism = completions); each must exit 0."""
    pods = [night.start(index, f"reconcile-test-{index}") for index in range(night.completions)]
    logs = []
    for index, pod in enumerate(pods):
        out, err = pod.communicate(timeout=300)
        podman("rm", "--force", f"reconcile-test-{index}")
        assert pod.returncode == 0, f"pod {index}: {err[-3000:]}"
        logs.append(out + err)
    return logs


def _sent(sandbox: SandboxServer) -> Counter[str]:
    return Counter(str(r["path"]) for r in sandbox.state.requests)


def test_one_night_applies_every_row_once_and_a_second_night_sends_nothing(
    night: Night, sandbox: SandboxServer
) -> None:
    """Pods 0 and 1 of the indexed Job each take their community; every row of both is sent
    exactly once (by the pod of its community); the same file dropped again the next night
    sends nothing."""
    source = _drop(night, ["acme", "globex"])
    kept = source.read_text()
    _run_night(night)
    sent = _sent(sandbox)
    assert len(sent) == 2 * ROWS and set(sent.values()) == {1}, sent
    by_community = Counter(str(r.get("community")) for r in sandbox.state.requests)
    assert by_community == {"acme": ROWS, "globex": ROWS}
    for community in ("acme", "globex"):  # each pod's results: its community applied
        [results] = (night.volume("data") / "results" / community).glob("*.results.csv")
        applied = [line for line in results.read_text().splitlines() if ",applied,200," in line]
        assert len(applied) == ROWS and all(f",{community}," in line for line in applied)
    source.write_text(kept)
    os.utime(source, (time.time() - 3600, time.time() - 3600))
    before = len(sandbox.state.requests)
    _run_night(night)
    assert len(sandbox.state.requests) == before


def _ledger(night: Night) -> dict[str, str]:
    """Each request path's state in the ledger (the pods' own database)."""
    url = night.secrets["ledger-url"].replace(
        f"{USER}@", f"{USER}:{night.secrets['ledger-password']}@"
    )
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT path, state FROM requests").fetchall()
    return {str(path): str(state) for path, state in rows}


def test_a_pod_killed_mid_run_resumes_with_nothing_applied_sent_twice(
    night: Night, sandbox: SandboxServer
) -> None:
    """podman kill while requests are in flight (a slow sandbox), then the pod started again:
    every row ends up applied; no request the ledger had recorded applied is sent again, and
    only those in flight at the kill are re-sent (setting a value twice is harmless, and the
    results say so)."""
    sandbox.state.faults.rules = [FaultRule(kind="latency", seconds=0.3)]
    _drop(night, ["acme"], rows=30)
    pod = night.start(0, "reconcile-test-killed")
    deadline = time.monotonic() + 120
    while len(sandbox.state.requests) < 8:
        assert time.monotonic() < deadline and pod.poll() is None, pod.stderr
        time.sleep(0.05)
    assert podman("kill", "reconcile-test-killed").returncode == 0
    pod.communicate(timeout=60)
    podman("rm", "--force", "reconcile-test-killed")
    assert pod.returncode != 0
    at_kill = _ledger(night)
    applied = {path for path, state in at_kill.items() if state == "applied"}
    in_flight = {path for path, state in at_kill.items() if state == "in_flight"}
    assert applied and len(at_kill) < 30, at_kill
    sandbox.state.faults.rules = []
    again = night.start(0, "reconcile-test-killed")
    _, err = again.communicate(timeout=300)
    podman("rm", "--force", "reconcile-test-killed")
    assert again.returncode == 0, err[-3000:]
    sent = _sent(sandbox)
    assert len(sent) == 30, sent  # every row reached the API
    twice = {path for path, times in sent.items() if times > 1}
    assert twice <= in_flight and not twice & applied, (twice, in_flight)
    assert all(times <= 2 for times in sent.values())
    [results] = (night.volume("data") / "results" / "acme").glob("*.results.csv")
    resent = results.read_text().count("re-sent: the previous run stopped")
    assert resent == len(in_flight)
