"""The split bench/newman.py makes of a run's time (its figures are in bench/README.md): the
fixed cost before the first request and after the last answer, read from the sandbox's log."""

from __future__ import annotations

import pytest

from bench.newman import timeline


def test_a_run_is_split_at_the_first_arrival_and_the_last_answer() -> None:
    """Before the first request: from the start to the first arrival (a 429 counts: it was sent);
    after the last answer: from the last 2xx arrival plus the latency to the exit."""
    log = [
        {"time": 101.5, "status": 200, "path": "/v1/a"},
        {"time": 101.2, "status": 429, "path": "/v1/b"},
        {"time": 102.6, "status": 200, "path": "/v1/b"},
        {"time": 102.9, "status": 429, "path": "/v1/c"},  # never answered 2xx: not applied
    ]
    timing = timeline(log, started=100.0, ended=103.0, latency=0.1, cpu=1.5)
    assert timing.before_first == pytest.approx(1.2)
    assert timing.after_last == pytest.approx(0.3)
    assert timing.fixed == pytest.approx(1.5)
    assert (timing.total, timing.cpu, timing.applied, timing.limited) == (3.0, 1.5, 2, 2)
