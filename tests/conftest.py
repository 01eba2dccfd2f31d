"""Shared fixtures: a real sandbox server on 127.0.0.1, test credentials in the environment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconcile.sandbox import Faults, SandboxServer, SandboxState, load_seed
from reconcile.sandbox.seeding import add_orders
from reconcile.sandbox.state import DEFAULT_SEED
from tests.helpers import CREDENTIALS, GENERATED, KEYS, credential_env


@pytest.fixture(autouse=True)
def private_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the user's own ledger: the default state dir is a temp one."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


@pytest.fixture
def seed() -> dict[str, Any]:
    data = load_seed(DEFAULT_SEED)
    add_orders(data, GENERATED)
    return data


@pytest.fixture
def sandbox(seed: dict[str, Any]) -> Iterator[SandboxServer]:
    """A fresh sandbox per test; tests change ``sandbox.state.faults`` as they need."""
    with SandboxServer(SandboxState(seed, Faults())) as server:
        yield server


@pytest.fixture
def keys_in_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every sandbox community's credentials in the variables :func:`write_job` names."""
    for community, found in CREDENTIALS.items():
        for credential, value in found.items():
            monkeypatch.setenv(credential_env(credential, community), value)
    return KEYS
