"""Job file (TOML) -> frozen settings with named defaults.

The job file names the operation, the API base URL, the per-community rate and concurrency, and for
each community the environment variables that hold its credentials. Keys are never in the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconcile.exceptions import ConfigError

DEFAULT_RATE_PER_SECOND = 5.0
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MAX_REJECT_RATE = 0.5
DEFAULT_GUARD_WINDOW = 50
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_INTERRUPT_GRACE_SECONDS = 10.0
DEFAULT_BACKOFF_BASE_SECONDS = 0.5
DEFAULT_SETTLE_SECONDS = 60.0
DEFAULT_RATE_LIMIT_BUDGET_SECONDS = 900.0
DEFAULT_APPROVAL_TTL_HOURS = 72.0


def default_state_dir() -> Path:
    """The user's state directory: $XDG_STATE_HOME/reconcile, else ~/.local/state/reconcile."""
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "reconcile"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommunitySettings:
    """One tenant: where its credentials live and its own limits."""

    name: str
    credential_envs: Mapping[str, str]
    """Credential name (e.g. ``api_key``) -> environment variable holding it."""
    rate_per_second: float
    concurrency: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Everything a run needs besides the input file."""

    path: Path | None
    operation: str
    base_url: str
    rate_per_second: float = DEFAULT_RATE_PER_SECOND
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    guard_window: int = DEFAULT_GUARD_WINDOW
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    interrupt_grace_seconds: float = DEFAULT_INTERRUPT_GRACE_SECONDS
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS
    rate_limit_budget_seconds: float = DEFAULT_RATE_LIMIT_BUDGET_SECONDS
    """How long 429s may hold one community in a run (each counts its Retry-After, at least
    1 s); past it the community stops, so a spent daily quota never keeps a nightly run waiting
    (and the next night's run locked out) for hours."""
    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    input: str | None = None
    """For cron: a file, a glob or an inbox directory (relative to the job file's folder)."""
    results_dir: Path | None = None
    archive_dir: Path | None = None
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    """An inbox file modified more recently than this is still being written: left for later."""
    results_format: str = "csv"
    notify_url: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The ``[options]`` table: settings of the operation (e.g. ``skip_downstream``)."""
    require_approval: bool = False
    """A real run needs a plan approved by a second person (``run --plan``)."""
    approval_ttl_hours: float = DEFAULT_APPROVAL_TTL_HOURS
    """An approval older than this cannot be applied: the file must be planned again."""
    communities: Mapping[str, CommunitySettings] = dataclasses.field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> Job:
        """Command-line flags win over the file; ``None`` means 'not given'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "state_dir" in given:
            given["state_dir"] = Path(given["state_dir"]).expanduser()
        if not given:
            return self
        if "base_url" in given:
            given["base_url"] = checked_base_url(given["base_url"], "--base-url", self.path)
        rate = given.get("rate_per_second")
        concurrency = given.get("concurrency")
        _check_positive(rate, "--rate", self.path)
        _check_positive(concurrency, "--concurrency", self.path)
        communities = self.communities
        if rate is not None or concurrency is not None:
            # A flag applies to every community, including those with their own value.
            communities = {
                name: dataclasses.replace(
                    c,
                    rate_per_second=rate if rate is not None else c.rate_per_second,
                    concurrency=concurrency if concurrency is not None else c.concurrency,
                )
                for name, c in communities.items()
            }
        return dataclasses.replace(self, communities=communities, **given)


_TOP_KEYS: dict[str, type | tuple[type, ...]] = {
    "operation": str,
    "base_url": str,
    "rate_per_second": (int, float),
    "concurrency": int,
    "max_attempts": int,
    "max_reject_rate": (int, float),
    "guard_window": int,
    "timeout_seconds": (int, float),
    "interrupt_grace_seconds": (int, float),
    "backoff_base_seconds": (int, float),
    "rate_limit_budget_seconds": (int, float),
    "state_dir": str,
    "input": str,
    "results_dir": str,
    "archive_dir": str,
    "settle_seconds": (int, float),
    "results_format": str,
    "notify_url": str,
    "options": dict,
    "communities": dict,
    "require_approval": bool,
    "approval_ttl_hours": (int, float),
}
_COMMUNITY_LIMIT_KEYS = {"rate_per_second": (int, float), "concurrency": int}


def _fail(path: Path | None, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path or 'job'}: {where}: {problem}. Fix: {fix}")


def _check_positive(value: Any, where: str, path: Path | None) -> None:
    if value is not None and (isinstance(value, bool) or value <= 0):
        raise _fail(path, where, f"must be a number above 0, got {value!r}", "use e.g. 5")


#: Hosts plain http may be used with: keys never leave the machine.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def checked_base_url(url: str, where: str, path: Path | None) -> str:
    """An https URL (or http on this machine, for the sandbox), without a trailing slash: the
    keys ride along with every request and must never cross a network unencrypted."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise _fail(
            path,
            where,
            f"not an http(s) URL: {url!r}",
            'write it in full, e.g. "https://api.returning.ai"',
        )
    if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
        raise _fail(
            path,
            where,
            f"{url!r} would send the API keys unencrypted",
            "use https:// (plain http is only accepted for 127.0.0.1 / localhost)",
        )
    return url.rstrip("/")


def load_job(path: Path) -> Job:
    """Read and check a job file; every mistake names the file, the key and the fix."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: job file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax.") from None
    return parse_job(raw, path)


def parse_job(raw: Mapping[str, Any], path: Path | None = None) -> Job:
    """Turn a parsed TOML table into a Job, refusing unknown keys and wrong types."""
    for key, value in raw.items():
        expected = _TOP_KEYS.get(key)
        if expected is None:
            raise _fail(path, key, "unknown key", f"remove it; known keys: {', '.join(_TOP_KEYS)}")
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise _fail(path, key, f"wrong type {type(value).__name__}", "see the README")
    for key in ("operation", "base_url"):
        if not raw.get(key):
            raise _fail(path, key, "missing", f'add {key} = "..." at the top of the file')
    for key in (
        "approval_ttl_hours",
        "rate_per_second",
        "concurrency",
        "max_attempts",
        "guard_window",
        "rate_limit_budget_seconds",
    ):
        _check_positive(raw.get(key), key, path)
    reject = raw.get("max_reject_rate")
    if reject is not None and not 0 < reject <= 1:
        raise _fail(path, "max_reject_rate", f"must be in (0, 1], got {reject}", "use e.g. 0.5")
    rate = float(raw.get("rate_per_second", DEFAULT_RATE_PER_SECOND))
    concurrency = int(raw.get("concurrency", DEFAULT_CONCURRENCY))
    communities: dict[str, CommunitySettings] = {}
    for name, table in raw.get("communities", {}).items():
        where = f"[communities.{name}]"
        if not isinstance(table, dict):
            raise _fail(path, where, "must be a table", f"write [communities.{name}]")
        envs: dict[str, str] = {}
        for key, value in table.items():
            if key in _COMMUNITY_LIMIT_KEYS:
                _check_positive(value, f"{where} {key}", path)
            elif key.endswith("_env") and isinstance(value, str) and value:
                envs[key.removesuffix("_env")] = value
            else:
                raise _fail(
                    path,
                    f"{where} {key}",
                    "unknown key (credentials are named by *_env keys holding a variable name)",
                    'e.g. api_key_env = "RETURNING_AI_KEY_ACME"; never put a key in the file',
                )
        communities[name] = CommunitySettings(
            name=name,
            credential_envs=envs,
            rate_per_second=float(table.get("rate_per_second", rate)),
            concurrency=int(table.get("concurrency", concurrency)),
        )
    state_dir = raw.get("state_dir")
    if raw.get("results_format", "csv") not in ("csv", "xlsx"):
        raise _fail(path, "results_format", f"got {raw['results_format']!r}", 'use "csv" or "xlsx"')
    notify = raw.get("notify_url")
    if notify is not None and not notify.startswith(("http://", "https://")):
        raise _fail(path, "notify_url", f"not an http(s) URL: {notify!r}", "use https://...")
    base = path.parent if path is not None else Path()

    def folder(key: str) -> Path | None:
        value = raw.get(key)
        return (base / Path(value).expanduser()) if value else None

    return Job(
        path=path,
        operation=raw["operation"],
        base_url=checked_base_url(raw["base_url"], "base_url", path),
        rate_per_second=rate,
        concurrency=concurrency,
        max_attempts=int(raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        max_reject_rate=float(raw.get("max_reject_rate", DEFAULT_MAX_REJECT_RATE)),
        guard_window=int(raw.get("guard_window", DEFAULT_GUARD_WINDOW)),
        timeout_seconds=float(raw.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
        interrupt_grace_seconds=float(
            raw.get("interrupt_grace_seconds", DEFAULT_INTERRUPT_GRACE_SECONDS)
        ),
        backoff_base_seconds=float(raw.get("backoff_base_seconds", DEFAULT_BACKOFF_BASE_SECONDS)),
        rate_limit_budget_seconds=float(
            raw.get("rate_limit_budget_seconds", DEFAULT_RATE_LIMIT_BUDGET_SECONDS)
        ),
        state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(),
        input=raw.get("input"),
        results_dir=folder("results_dir"),
        archive_dir=folder("archive_dir"),
        settle_seconds=float(raw.get("settle_seconds", DEFAULT_SETTLE_SECONDS)),
        results_format=raw.get("results_format", "csv"),
        notify_url=notify,
        options=dict(raw.get("options", {})),
        communities=communities,
        require_approval=bool(raw.get("require_approval", False)),
        approval_ttl_hours=float(raw.get("approval_ttl_hours", DEFAULT_APPROVAL_TTL_HOURS)),
    )
