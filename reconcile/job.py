"""Job file (TOML) -> frozen settings with named defaults.

The job file names the operation, the API base URL, the per-community rate and concurrency, and for
each community the environment variables that hold its credentials. Keys are never in the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard, TypeVar, overload

from reconcile.database import Storage
from reconcile.exceptions import ConfigError
from reconcile.suggestions import closest


def default_state_dir() -> Path:
    """The user's state directory: $XDG_STATE_HOME/reconcile, else ~/.local/state/reconcile."""
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "reconcile"


#: The retry policy's knobs (:class:`reconcile.retry.RetryPolicy` defaults to them too).
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MAX_REJECT_RATE = 0.5
DEFAULT_GUARD_WINDOW = 50
DEFAULT_BACKOFF_BASE_SECONDS = 0.5
DEFAULT_RATE_LIMIT_BUDGET_SECONDS = 900.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommunitySettings:
    """One tenant: where its credentials live and its own limits."""

    name: str
    credential_envs: Mapping[str, str]
    """Credential name (e.g. ``api_key``) -> environment variable holding it."""
    rate_per_second: float
    concurrency: int


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """A setting's rule beyond its type: ``ok(value)`` or the job stops with ``problem`` and
    ``fix``. ``ok`` sees a value of the setting's type (it is checked first)."""

    ok: Callable[[object], bool]
    problem: str
    fix: str


def _above_zero(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _fraction(value: object) -> bool:
    return isinstance(value, (int, float)) and 0 < value <= 1


def _starts_with(*prefixes: str) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and value.startswith(prefixes)


def _numeric_id_choices(value: object) -> bool:
    return isinstance(value, dict) and all(x in ("accept", "refuse") for x in value.values())


POSITIVE = Check(_above_zero, "must be a number above 0", "use e.g. 5")
FRACTION = Check(_fraction, "must be in (0, 1]", "use e.g. 0.5")
HTTP_URL = Check(_starts_with("http://", "https://"), "not an http(s) URL", "use https://...")
POSTGRES_URL = Check(
    _starts_with("postgresql://", "postgres://"),
    "not a PostgreSQL URL",
    "use postgresql://USER@HOST/DATABASE (the password in PGPASSWORD, never in the file)",
)
NUMERIC_IDS = Check(
    _numeric_id_choices,
    'each column of [numeric_ids] must be "accept" or "refuse"',
    'write e.g. [numeric_ids] then orderId = "accept"',
)
RESULTS_FORMAT = Check(
    lambda value: value in ("csv", "xlsx"), "not a results format", 'use "csv" or "xlsx"'
)

T = TypeVar("T")


@overload
def setting(
    default: T,
    *,
    doc: str,
    example: object = None,
    check: Check | None = None,
    beside_job: bool = False,
) -> T: ...


@overload
def setting(
    *,
    factory: Callable[[], T],
    doc: str,
    example: object = None,
    check: Check | None = None,
    beside_job: bool = False,
) -> T: ...


@overload
def setting(*, doc: str, example: T, check: Check | None = None, beside_job: bool = False) -> T: ...


def setting(
    default: object = dataclasses.MISSING,
    *,
    factory: Callable[[], object] | None = None,
    doc: str,
    example: object = None,
    check: Check | None = None,
    beside_job: bool = False,
) -> object:
    """Declare a job-file setting once: its type is the field's, its default ``default`` (or
    ``factory()``; neither: the file must set it), and ``doc`` (one line, shown in the README's
    job file and ``reconcile settings``), ``example`` (the value shown when the default is not
    one to show), ``check`` and ``beside_job`` (a folder relative to the job file) drive
    parsing and validation."""
    metadata = {"doc": doc, "example": example, "check": check, "beside_job": beside_job}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (dict, Path)):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Everything a run needs besides the input file. Each ``setting(...)`` field is a key of
    the job file, declared here once: parsing, checks, defaults and docs all read it."""

    path: Path | None
    operation: str = setting(doc="which API operation the rows are for", example="purchase-history")
    base_url: str = setting(
        doc="https (plain http only for 127.0.0.1 / localhost)",
        example="https://api.returning.ai",
    )
    rate_per_second: float = setting(
        5.0, doc="per community: never more in any one-second window", check=POSITIVE
    )
    concurrency: int = setting(4, doc="per community: requests in flight at once", check=POSITIVE)
    max_attempts: int = setting(
        DEFAULT_MAX_ATTEMPTS, doc="per row, for 5xx, timeouts and cut connections", check=POSITIVE
    )
    max_reject_rate: float = setting(
        DEFAULT_MAX_REJECT_RATE,
        doc="stop a community when more than this share ...",
        check=FRACTION,
    )
    guard_window: int = setting(
        DEFAULT_GUARD_WINDOW, doc="... of its first N answered rows are rejected", check=POSITIVE
    )
    timeout_seconds: float = setting(
        30.0, doc="per request, the whole exchange: connect, send, answer"
    )
    interrupt_grace_seconds: float = setting(
        10.0, doc="after Ctrl-C/SIGTERM, wait this long for in-flight requests"
    )
    backoff_base_seconds: float = setting(
        DEFAULT_BACKOFF_BASE_SECONDS, doc="retry backoff: full jitter, doubling, capped at 30 s"
    )
    rate_limit_budget_seconds: float = setting(
        DEFAULT_RATE_LIMIT_BUDGET_SECONDS,
        doc="429s may hold a community this long per run, then it stops",
        check=POSITIVE,
    )
    verify_settle_seconds: float = setting(
        10.0, doc="verify: a read that differs this soon after the write is read again"
    )
    """Vendors apply part of a write asynchronously (Voucherify documents seconds): within this
    window a differing read is retried with backoff before it counts as a mismatch."""
    require_approval: bool = setting(
        False, doc="true: a real run only applies a plan a colleague approved"
    )
    approval_ttl_hours: float = setting(
        72.0, doc="an approval older than this cannot be applied", check=POSITIVE
    )
    state_dir: Path = setting(
        factory=default_state_dir,
        doc="the ledger (default: $XDG_STATE_HOME/reconcile)",
        example="~/.local/state/reconcile",
    )
    input: str | None = setting(
        None,
        doc="for cron: a file, a glob or an inbox folder (beside the job file)",
        example="inbox/",
    )
    results_dir: Path | None = setting(
        None, doc="inbox: where results files go", example="results/", beside_job=True
    )
    archive_dir: Path | None = setting(
        None, doc="inbox: where finished inputs are moved", example="done/", beside_job=True
    )
    settle_seconds: float = setting(
        60.0, doc="an inbox file modified more recently is still being written: left for later"
    )
    results_format: str = setting("csv", doc='"csv" or "xlsx"', check=RESULTS_FORMAT)
    notify_url: str | None = setting(
        None,
        doc="POST a run summary here when a run ends",
        example="https://hooks.example.com/reconcile",
        check=HTTP_URL,
    )
    ledger_url: str | None = setting(
        None,
        doc="PostgreSQL ledger (else SQLite in state_dir); or RECONCILE_LEDGER_URL",
        example="postgresql://reconcile@db.internal/reconcile",
        check=POSTGRES_URL,
    )
    fold_communities: bool = setting(
        False, doc="true: a community cell matches whatever its case and spaces (Acme is acme)"
    )
    """A community cell that is one of the job's communities once case and spaces are folded
    (``'Acme '``, ``ACME``) is that community; off by default: a cell must name it exactly
    (the refusal says "did you mean acme?")."""
    options: Mapping[str, object] = setting(
        {}, doc="[options] table: settings of the operation (e.g. skip_downstream)"
    )
    numeric_ids: Mapping[str, str] = setting(
        {},
        doc='[numeric_ids] table: an ID column = "accept" sends its whole-number cells',
        check=NUMERIC_IDS,
    )
    """Per ID column (``Column.kind`` ``id``), ``"accept"``: a spreadsheet number cell that is
    a whole number of at most 15 digits, or a CSV ID in E-notation or with a trailing ``.0``, is
    that value, for a team whose IDs are truly numbers; ``"refuse"`` (the default) reports it
    (:mod:`reconcile.numeric_ids`)."""
    communities: Mapping[str, CommunitySettings] = dataclasses.field(default_factory=dict)

    @property
    def storage(self) -> Storage:
        """Where the job's ledger, plans and approvals live."""
        return Storage(self.state_dir, self.ledger_url)

    def with_overrides(self, **overrides: object) -> Job:
        """Command-line flags win over the file; ``None`` means 'not given'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "state_dir" in given:
            given["state_dir"] = _folder(given["state_dir"], "--state-dir", self.path)
        if not given:
            return self
        if "base_url" in given:
            given["base_url"] = checked_base_url(given["base_url"], "--base-url", self.path)
        rate = _positive(given.get("rate_per_second"), "--rate", self.path)
        concurrency = _positive(given.get("concurrency"), "--concurrency", self.path, whole=True)
        communities = self.communities
        if rate is not None or concurrency is not None:
            # A flag applies to every community, including those with their own value.
            communities = {
                name: dataclasses.replace(
                    c,
                    rate_per_second=rate if rate is not None else c.rate_per_second,
                    concurrency=int(concurrency) if concurrency is not None else c.concurrency,
                )
                for name, c in communities.items()
            }
        return _with_settings(dataclasses.replace(self, communities=communities), given)


def _with_settings(job: Job, checked: Mapping[str, object]) -> Job:
    """``job`` with settings by name, their values already checked against their fields' types
    (at run time: a setting's name does not carry its type to mypy)."""
    changes: dict[str, Any] = dict(checked)
    return dataclasses.replace(job, **changes)


_COMMUNITY_LIMIT_KEYS = ("rate_per_second", "concurrency")


def settings() -> list[dataclasses.Field[object]]:
    """The job file's top-level settings, in the order the README shows them."""
    return [f for f in dataclasses.fields(Job) if "doc" in f.metadata]


def example_toml() -> str:
    """The top of a job file with every setting, its default (or an example) and its doc: the
    README's job file and ``reconcile settings`` print this."""
    lines = []
    for field in settings():
        if str(field.type).startswith("Mapping"):
            continue  # tables ([options], [numeric_ids]): the README shows them on their own
        shown = field.metadata["example"]
        if shown is None:
            shown = field.default if field.default is not dataclasses.MISSING else ""
        if isinstance(shown, float) and shown.is_integer():
            shown = int(shown)
        text = "true" if shown is True else "false" if shown is False else json.dumps(shown)
        optional = "# " if field.default is None else ""  # off unless set: shown commented
        line = f"{optional}{field.name} = {text}"
        lines.append(f"{line:<39} # {field.metadata['doc']}")
    return "\n".join(lines)


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    """``did you mean 'rate_per_second'? `` for a misspelt key, else what to do."""
    close = closest(key, known)
    return f"did you mean {close!r}? " if close else "remove it or correct it; "


def _fail(path: Path | None, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path or 'job'}: {where}: {problem}. Fix: {fix}")


def _positive(value: object, where: str, path: Path | None, *, whole: bool = False) -> float | None:
    """A number above 0 (``whole``: an integer), or None when not given."""
    if value is None:
        return None
    if _above_zero(value) and (isinstance(value, int) or not whole):
        return value
    raise _fail(path, where, f"must be a number above 0, got {value!r}", "use e.g. 5")


def _folder(value: object, where: str, path: Path | None) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise _fail(path, where, f"not a folder: {value!r}", "give a path")
    return Path(value).expanduser()


#: Hosts plain http may be used with: keys never leave the machine.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def checked_base_url(url: object, where: str, path: Path | None) -> str:
    """An https URL (or http on this machine, for the sandbox), without a trailing slash: the
    keys ride along with every request and must never cross a network unencrypted."""
    parsed = urllib.parse.urlsplit(url if isinstance(url, str) else "")
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
    # One spelling per API: the ledger's fingerprints and the run locks both key on it, so
    # `HTTPS://API.example.com:443/` and `https://api.example.com` are the same target.
    netloc = parsed.netloc.lower()
    default_port = {"https": ":443", "http": ":80"}[parsed.scheme]
    netloc = netloc.removesuffix(default_port)
    rebuilt = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, ""))
    return rebuilt.rstrip("/")


def load_job(path: Path) -> Job:
    """Read and check a job file; every mistake names the file, the key and the fix."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: job file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax.") from None
    return parse_job(raw, path)


def _accepts(hint: str, value: object) -> bool:
    """Whether a TOML value has the type a setting's annotation asks for."""
    if isinstance(value, bool):
        return hint == "bool"
    if hint.startswith("float"):
        return isinstance(value, (int, float))
    if hint.startswith("int"):
        return isinstance(value, int)
    if hint.startswith("Mapping"):
        return isinstance(value, dict)
    return isinstance(value, str)  # str, Path and their optional forms


def _setting_value(field: dataclasses.Field[object], value: object, path: Path | None) -> object:
    """A checked TOML value, converted to the field's type."""
    hint = str(field.type)
    if not _accepts(hint, value):
        raise _fail(path, field.name, f"wrong type {type(value).__name__}", "see the README")
    check: Check | None = field.metadata["check"]
    if check is not None and not check.ok(value):
        raise _fail(path, field.name, f"{check.problem}, got {value!r}", check.fix)
    if isinstance(value, (int, float)) and hint.startswith("float"):
        return float(value)
    if isinstance(value, dict) and hint.startswith("Mapping"):
        return dict(value)
    if isinstance(value, str) and hint.startswith("Path"):
        folder = Path(value).expanduser()
        return (
            (path.parent if path is not None else Path()) / folder
            if field.metadata["beside_job"]
            else folder
        )
    return value


def _community(name: str, table: object, job: Job, path: Path | None) -> CommunitySettings:
    """A ``[communities.NAME]`` table; its limits default to the job's."""
    where = f"[communities.{name}]"
    if not isinstance(table, dict):
        raise _fail(path, where, "must be a table", f"write [communities.{name}]")
    envs: dict[str, str] = {}
    for key, value in table.items():
        if key in _COMMUNITY_LIMIT_KEYS:
            _positive(value, f"{where} {key}", path)
        elif key.endswith("_env") and isinstance(value, str) and value:
            envs[key.removesuffix("_env")] = value
        else:
            known = [*_COMMUNITY_LIMIT_KEYS, "<credential>_env"]
            raise _fail(
                path,
                f"{where} {key}",
                "unknown key (credentials are named by *_env keys holding a variable name)",
                f"{_did_you_mean(key, list(_COMMUNITY_LIMIT_KEYS))}"
                'e.g. api_key_env = "RETURNING_AI_KEY_ACME"; never put a key in the file; '
                f"known keys: {', '.join(known)}",
            )
    return CommunitySettings(
        name=name,
        credential_envs=envs,
        rate_per_second=float(table.get("rate_per_second", job.rate_per_second)),
        concurrency=int(table.get("concurrency", job.concurrency)),
    )


def _required(values: dict[str, object], key: str, path: Path | None) -> str:
    """Take out a text setting the file must set (its type is already checked)."""
    value = values.pop(key, None)
    if not isinstance(value, str) or not value:
        raise _fail(path, key, "missing", f'add {key} = "..." at the top of the file')
    return value


def parse_job(raw: Mapping[str, object], path: Path | None = None) -> Job:
    """Turn a parsed TOML table into a Job, refusing unknown keys, wrong types and values its
    settings' checks refuse (every setting is declared once, on :class:`Job`)."""
    declared = {f.name: f for f in settings()}
    for key in raw:
        if key not in declared and key != "communities":
            known = [*declared, "communities"]
            raise _fail(
                path,
                key,
                "unknown key",
                f"{_did_you_mean(key, known)}known keys: {', '.join(known)}",
            )
    values = {k: _setting_value(declared[k], v, path) for k, v in raw.items() if k in declared}
    operation = _required(values, "operation", path)
    base_url = _required(values, "base_url", path)
    job = _with_settings(Job(path=path, operation=operation, base_url=base_url), values)
    tables = raw.get("communities", {})
    if not isinstance(tables, dict):
        raise _fail(path, "communities", f"wrong type {type(tables).__name__}", "see the README")
    communities = {name: _community(name, t, job, path) for name, t in tables.items()}
    return dataclasses.replace(
        job,
        communities=communities,
        base_url=checked_base_url(base_url, "base_url", path),
    )
