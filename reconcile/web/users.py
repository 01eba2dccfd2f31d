"""The console's users, sessions and sign-in throttling, in the ledger's database (SQLite in
the state dir, or PostgreSQL).

Passwords are stored as argon2id hashes (argon2-cffi's defaults, RFC 9106's second
recommendation); a session is a random token whose SHA-256 is stored, so a copy of the database
does not sign anyone in; sign-out deletes the row (the session ends on the server, not only in
the browser).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile.database import CONSOLE_POOL_SIZE, Storage, as_storage, open_database
from reconcile.exceptions import ConfigError
from reconcile.schema import create_console_schema

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
#: zxcvbn's score (0-4): 3 is "safely unguessable: moderate protection from an offline
#: slow-hash attack" (10^8 guesses or more); argon2id is such a hash.
MIN_PASSWORD_SCORE = 3
SESSION_HOURS = 8.0
#: Sign-in is throttled for ``LOCKOUT_MINUTES`` after this many recent failed attempts for one
#: name from one client address (OWASP: a stranger elsewhere cannot lock an approver out), from
#: one address whatever the names (higher: colleagues behind one proxy share it), and for one
#: name from all addresses together (much higher: a guessing attack spread over many hosts).
MAX_FAILURES = 5
MAX_FAILURES_PER_ADDRESS = 20
MAX_FAILURES_PER_NAME = 100
LOCKOUT_MINUTES = 15
#: The longest user name; longer sign-in names are counted under their first characters.
MAX_NAME_CHARS = 64


class SignInThrottled(Exception):
    """Too many recent sign-in attempts for this name and address (or either alone)."""


def _key(kind: str, *parts: str) -> str:
    return f"{kind}:" + "\x1f".join(p[:MAX_NAME_CHARS] for p in parts)


class Role(enum.StrEnum):
    """What a console user may do. Submitters upload and see their own runs; approvers also
    decide others' plans; viewers read history and run pages; admins may do everything."""

    SUBMITTER = "submitter"
    APPROVER = "approver"
    VIEWER = "viewer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    disabled: bool = False
    must_change_password: bool = False
    """A one-time password (the demo's): the user sets their own before anything else."""

    @property
    def can_submit(self) -> bool:
        return self.role in (Role.SUBMITTER, Role.APPROVER, Role.ADMIN)

    @property
    def can_approve(self) -> bool:
        return self.role in (Role.APPROVER, Role.ADMIN)

    @property
    def sees_all_runs(self) -> bool:
        return self.role is not Role.SUBMITTER


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_USER = "name, role, disabled, must_change_password"


def _user(row: tuple[object, ...]) -> User:
    return User(str(row[0]), Role(str(row[1])), bool(row[2]), bool(row[3]))


class UserStore:
    """Users, sessions and sign-in failures of one state dir."""

    def __init__(self, where: Path | Storage) -> None:
        from argon2 import PasswordHasher

        self._hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self.db = open_database(as_storage(where), pool_size=CONSOLE_POOL_SIZE)
        if self.db.dialect == "sqlite":
            create_console_schema(self.db)

    def close(self) -> None:
        self.db.close()

    # -- users ----------------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, *, one_time: bool = False) -> User:
        """A new user; ConfigError for a taken or malformed name, a weak password or an unknown
        role (nothing stored)."""
        if (
            not name
            or len(name) > MAX_NAME_CHARS
            or not name.replace(".", "").replace("-", "").replace("_", "").isalnum()
            or not name.isascii()
        ):
            raise ConfigError(f"user name {name!r}: use letters, digits, '.', '-' or '_'")
        try:
            checked = Role(role)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ConfigError(f"role {role!r}: use one of {known}") from None
        check_password(password, name)
        added = self.db.run(
            "INSERT INTO users (name, role, password_hash, created_at, must_change_password) "
            "VALUES (?,?,?,?,?) ON CONFLICT (name) DO NOTHING",
            (name, checked.value, self._hasher.hash(password), _now().isoformat(), int(one_time)),
        )
        if added == 0:
            raise ConfigError(f"user {name!r} exists already")
        return User(name, checked, must_change_password=one_time)

    def change_password(self, name: str, current: str, new: str, address: str) -> None:
        """The user's own new password: the current one must match (counted like a sign-in),
        the new one pass :func:`check_password` and differ; the one-time mark is cleared and
        every other session of the user ends. ConfigError (nothing changed) otherwise."""
        if self.authenticate(name, current, address) is None:
            raise ConfigError("the current password is wrong")
        if new == current:
            raise ConfigError("the new password is the one you have: choose another")
        check_password(new, name)
        self.db.run(
            "UPDATE users SET password_hash = ?, must_change_password = 0 WHERE name = ?",
            (self._hasher.hash(new), name),
        )

    def list(self) -> list[User]:
        rows = self.db.rows(f"SELECT {_USER} FROM users ORDER BY name")
        return [_user(row) for row in rows]

    def get(self, name: str) -> User | None:
        row = self.db.one(f"SELECT {_USER} FROM users WHERE name = ?", (name,))
        return None if row is None else _user(row)

    def disable(self, name: str) -> None:
        """The user can no longer sign in; their open sessions end now."""
        changed = self.db.run("UPDATE users SET disabled = 1 WHERE name = ?", (name,))
        if changed == 0:
            raise ConfigError(f"no user {name!r}: see 'reconcile users list'")
        self.db.run("DELETE FROM sessions WHERE user_name = ?", (name,))

    # -- sign-in --------------------------------------------------------------------------------

    def authenticate(self, name: str, password: str, address: str) -> User | None:
        """The user when the password matches an enabled account; else None. The attempt is
        counted first, in the database (one INSERT per key, then a COUNT that includes every
        attempt committed before it), so that N guesses sent at once are N attempts: past a
        limit, :class:`SignInThrottled` before the password is looked at. A success clears the
        counts of its name and address. The hash is checked even for unknown names (same timing)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        self._count_attempt(name, address)
        row = self.db.one(
            "SELECT password_hash, role, disabled, must_change_password FROM users WHERE name = ?",
            (name,),
        )
        stored = row[0] if row and row[0] else _DUMMY_HASH.get(self._hasher)
        try:
            self._hasher.verify(stored, password)
            matched = row is not None and row[0] is not None and not row[2]
        except (VerificationError, InvalidHashError):
            matched = False
        if not matched or row is None:
            return None
        self.db.run(
            "DELETE FROM sign_in_failures WHERE key IN (?, ?, ?)",
            (_key("pair", name, address), _key("user", name), _key("addr", address)),
        )
        return User(name, Role(row[1]), must_change_password=bool(row[3]))

    def _count_attempt(self, name: str, address: str) -> None:
        now = _now()
        since = (now - dt.timedelta(minutes=LOCKOUT_MINUTES)).isoformat()
        # The time, then a nonce: still ordered as times, and this attempt's rows alone can be
        # taken back when it is throttled (it checked no password, so it is no guess).
        stamp = f"{now.isoformat()}|{secrets.token_hex(8)}"
        limits = (
            (_key("pair", name, address), MAX_FAILURES),
            (_key("addr", address), MAX_FAILURES_PER_ADDRESS),
            (_key("user", name), MAX_FAILURES_PER_NAME),
        )
        self.db.run_many(
            "INSERT INTO sign_in_failures (key, at) VALUES (?,?)", [(k, stamp) for k, _ in limits]
        )
        for key, limit in limits:
            found = self.db.one(
                "SELECT COUNT(*) FROM sign_in_failures WHERE key = ? AND at > ?", (key, since)
            )
            if found is not None and int(found[0]) > limit:
                self.db.run("DELETE FROM sign_in_failures WHERE at = ?", (stamp,))
                raise SignInThrottled(key.split(":", 1)[0])

    # -- sessions -------------------------------------------------------------------------------

    def open_session(self, user: User, hours: float = SESSION_HOURS) -> str:
        """A new session's token (for the signed cookie); its CSRF token is stored with it."""
        token = secrets.token_urlsafe(32)
        expires = _now() + dt.timedelta(hours=hours)
        self.db.run(
            "INSERT INTO sessions (token_sha256, user_name, csrf_token, expires_at) VALUES (?,?,?,?)",
            (_digest(token), user.name, secrets.token_urlsafe(32), expires.isoformat()),
        )
        return token

    def session(self, token: str) -> Session | None:
        """The live session of ``token``, or None (unknown, expired, or its user disabled)."""
        row = self.db.one(
            "SELECT s.csrf_token, s.expires_at, u.name, u.role, u.disabled, "
            "u.must_change_password FROM sessions s "
            "JOIN users u ON u.name = s.user_name WHERE s.token_sha256 = ?",
            (_digest(token),),
        )
        if row is None or row[4]:
            return None
        expires = dt.datetime.fromisoformat(row[1])
        if expires <= _now():
            self.close_session(token)
            return None
        return Session(_user(row[2:]), row[0], expires)

    def end_other_sessions(self, name: str, keep: str) -> None:
        """Every session of ``name`` but ``keep`` (a token) ends: after a password change."""
        self.db.run(
            "DELETE FROM sessions WHERE user_name = ? AND token_sha256 <> ?", (name, _digest(keep))
        )

    def close_session(self, token: str) -> None:
        self.db.run("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))


class _DummyHash:
    """One argon2id hash of a random password, made once: verified against when a name is
    unknown, so that a wrong name takes as long as a wrong password."""

    def __init__(self) -> None:
        self._hash: str | None = None

    def get(self, hasher: PasswordHasher) -> str:
        if self._hash is None:
            self._hash = hasher.hash(secrets.token_urlsafe(16))
        return self._hash


_DUMMY_HASH = _DummyHash()


def check_password(password: str, name: str = "") -> None:
    """ConfigError unless the password would hold against a guessing attack (NIST SP 800-63B's
    advice: length, and no password attackers try first, never composition rules): 12 to 256
    characters, not all one character or whitespace, and rated at least
    ``MIN_PASSWORD_SCORE`` of 4 by zxcvbn, which matches it against the 30,000 most common
    passwords (Xato's 10-million-password corpus), English words, names, keyboard walks, dates,
    repeats and the user's own name."""
    from zxcvbn import zxcvbn

    advice = "a passphrase of three or four unrelated words is easy to remember and hard to guess"
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters ({advice})"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip() or len(set(password)) == 1:
        raise ConfigError(f"the password is one character repeated or blank: {advice}")
    rated = zxcvbn(password, user_inputs=[name] if name else [])
    if int(rated["score"]) < MIN_PASSWORD_SCORE:
        why = (rated.get("feedback") or {}).get("warning") or "it is among the first guesses"
        raise ConfigError(f"the password is too easy to guess ({why.rstrip('.')}): {advice}")


def user_store(where: Path | Storage) -> contextlib.closing[UserStore]:
    """``with user_store(...) as users:`` the user store, closed at the end of the block."""
    return contextlib.closing(UserStore(where))
