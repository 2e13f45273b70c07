"""Who may do what on the configuration server.

Principals are of three kinds:

- **people**: named users with a role — ``viewer`` (reads), ``operator``
  (also runs operations, plans, protection), ``administrator`` (also
  credentials, vCenters, sites, backups, users, the audit log). They log in
  with a password (``POST /v1/login``) and get a session token that expires
  (``SESSION_HOURS``); only its SHA-256 is kept.
- **services**: a process server's or master target's token reaches only its
  own routes (``api/roles.ROLE_ROUTES``).
- the server's own ``admin`` token (``<state>/admin.token``, made at first
  start): an administrator, the way in before any user exists.

Every route's required role comes from ``RULES`` (first match wins, and the
last two rules match everything, so no route is left without one); a test
walks the OpenAPI document with each role. Passwords are hashed with scrypt
(the standard library's, RFC 7914 parameters n=2**14, r=8, p=1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import User, UserSession
from vmdr.model.errors import VmdrError
from vmdr.transport.auth import Principal, TokenStore, Unauthorized

__all__ = [
    "RULES",
    "SESSION_HOURS",
    "BadLogin",
    "People",
    "Role",
    "RoleTooLow",
    "hash_password",
    "may_call_as",
    "required_role",
    "verify_password",
]

SESSION_HOURS = 12.0
USER_PREFIX = "user:"  # a person's principal name; ':' is in no token client's name


class Role(IntEnum):
    """Ordered: a role may do what the ones below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMINISTRATOR = 3

    @classmethod
    def named(cls, name: str) -> Role:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


_CHANGE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READ = frozenset({"GET", "HEAD"})
RULES: list[tuple[frozenset[str], re.Pattern[str], Role]] = [
    (frozenset({"POST"}), re.compile(r"^/v1/logout$"), Role.VIEWER),  # anyone ends their own
    (_READ, re.compile(r"^/v1/server/backup(-key)?$"), Role.ADMINISTRATOR),
    (_CHANGE, re.compile(r"^/v1/server/"), Role.ADMINISTRATOR),
    (_CHANGE, re.compile(r"^/v1/(vcenters|sites)(/\{[^}]+\})?$"), Role.ADMINISTRATOR),
    (_READ | _CHANGE, re.compile(r"^/v1/(users|audit)(/|$)"), Role.ADMINISTRATOR),
    (_READ, re.compile(r""), Role.VIEWER),
    (_CHANGE, re.compile(r""), Role.OPERATOR),
]


def required_role(method: str, route: str) -> Role:
    """The least role that may call ``method route`` (a route template)."""
    for methods, pattern, role in RULES:
        if method in methods and pattern.search(route):
            return role
    return Role.ADMINISTRATOR  # a method no rule names (OPTIONS …)


class BadLogin(VmdrError):
    code = "VMDR-E0358"
    http_status = 401
    msg = "wrong user name or password"
    fix = "Check both; an administrator can set a new password (`vmdr users passwd NAME`)."


class RoleTooLow(VmdrError):
    code = "VMDR-E0359"
    http_status = 403
    msg = "{principal} is a {role}; {method} {path} needs a {needed}"
    fix = "Ask an administrator for that role (`vmdr users set-role NAME ROLE`)."


# -- passwords ------------------------------------------------------------------------------
_N, _R, _P = 2**14, 8, 1


def _bytes(password: str) -> bytes:
    # Any text a JSON request can carry, lone surrogates included (they
    # cannot be UTF-8, and must not turn a login into a 500).
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(_bytes(password), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(_bytes(password), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


# A hash to check against when the user does not exist: the answer takes as
# long as for a wrong password, so it does not tell which names exist.
_DUMMY = hash_password(secrets.token_urlsafe(16))


@dataclass
class People:
    """Principals from tokens: the token store's clients, then sessions."""

    sessions: sessionmaker[Session]
    tokens: TokenStore
    hours: float = SESSION_HOURS

    def authenticate(self, header: str | None) -> Principal:
        try:
            name = self.tokens.authenticate(header)
        except Unauthorized:
            token = (header or "").partition(" ")[2].strip()
            if not token:
                raise
            person = self._session_of(token)
            if person is None:
                raise
            return person
        return Principal(name, Role.ADMINISTRATOR.label)

    def _session_of(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.sessions() as s:
            found = s.execute(
                select(User.name, User.role, UserSession.expires_at)
                .join(User, User.id == UserSession.user_id)
                .where(UserSession.token_digest == digest)
            ).first()
        if found is None or _aware(found.expires_at) <= dt.datetime.now(dt.UTC):
            return None
        return Principal(USER_PREFIX + found.name, found.role)

    def login(self, name: str, password: str) -> dict[str, Any]:
        """A new session for ``name``: its token (shown once) and expiry."""
        with self.sessions.begin() as s:
            user = s.scalars(select(User).where(User.name == name)).first()
            if not verify_password(password, user.password_hash if user else _DUMMY) or not user:
                raise BadLogin()
            token = secrets.token_urlsafe(32)
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=self.hours)
            s.add(UserSession(token_digest=hashlib.sha256(token.encode()).hexdigest(),
                              user_id=user.id, expires_at=expires))  # fmt: skip
            s.execute(delete(UserSession).where(UserSession.expires_at < dt.datetime.now(dt.UTC)))
            return {"user": user.name, "role": user.role, "token": token, "expires_at": expires}

    def logout(self, token: str) -> None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.sessions.begin() as s:
            s.execute(delete(UserSession).where(UserSession.token_digest == digest))


def may_call_as(principal: Principal, method: str, route: str) -> bool:
    """A person's (or the admin token's) role against the route's rule."""
    try:
        role = Role.named(principal.role)
    except KeyError:
        return False
    return role >= required_role(method, route)


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands datetimes back without their zone; vmdr stores UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
