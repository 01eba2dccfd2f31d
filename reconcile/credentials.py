"""Each community's credentials, typed: the secrets its requests carry, or why it has none."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconcile import logs
from reconcile.exceptions import ConfigError
from reconcile.job import Job
from reconcile.operations import Operation


@dataclasses.dataclass(frozen=True, slots=True)
class Secrets:
    """A community's credentials by the names its operation declares (``api_key`` ...)."""

    values: Mapping[str, str] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Missing:
    """A community without usable credentials: its rows fail with ``reason``, nothing is sent."""

    reason: str


Credentials = Secrets | Missing


def resolve_credentials(
    operation: Operation,
    job: Job,
    communities: list[str],
    environ: Mapping[str, str],
    given: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Credentials]:
    """Each community's secrets from its environment variables, or why it has none; every
    secret is registered with the log redactor.

    ``given`` supplies secrets directly (the in-process sandbox knows its own keys). A job file
    that does not say where a credential lives is a ConfigError: nothing is sent.
    """
    resolved: dict[str, Credentials] = {}
    for name in communities:
        found = _community(operation, job, name, environ, given)
        if isinstance(found, Secrets):
            for secret in found.values.values():
                logs.register_secret(secret)
        resolved[name] = found
    return resolved


def _community(
    operation: Operation,
    job: Job,
    name: str,
    environ: Mapping[str, str],
    given: Mapping[str, Mapping[str, str]] | None,
) -> Credentials:
    if given and name in given:
        return Secrets(dict(given[name]))
    settings = job.communities[name]
    found: dict[str, str] = {}
    for credential in operation.credentials:
        variable = settings.credential_envs.get(credential)
        if variable is None:
            raise ConfigError(
                f"{job.path or 'job'}: [communities.{name}] has no {credential}_env. "
                f'Fix: add {credential}_env = "SOME_VARIABLE" and export that variable.'
            )
        value = environ.get(variable, "")
        if not value:
            return Missing(f"environment variable {variable} is not set")
        found[credential] = value
    return Secrets(found)


def missing_credentials(
    operation: Operation,
    job: Job,
    communities: list[str],
    environ: Mapping[str, str],
    given: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """What stops each of ``communities`` from being sent to, one line per variable (unset or
    empty, or not named in the job file), for the pre-flight's message; never a value."""
    problems = []
    for name in communities:
        if given and name in given:
            continue
        settings = job.communities[name]
        for credential in operation.credentials:
            variable = settings.credential_envs.get(credential)
            if variable is None:
                problems.append(
                    f"community {name}: [communities.{name}] in {job.path or 'the job'} has no "
                    f'{credential}_env. Fix: add {credential}_env = "SOME_VARIABLE" and export it'
                )
            elif not environ.get(variable, "").strip():
                problems.append(
                    f"community {name}: environment variable {variable} ({credential}) is "
                    "unset, empty or only spaces. Fix: export it (the keys file cron sources)"
                )
    return problems
