"""People over HTTP: login, users and their roles, and the audit log.

    POST   /v1/login              {user, password} -> {token, expires_at, role} (open)
    POST   /v1/logout             ends the session whose token is sent
    GET    /v1/users              the users and their roles (administrator)
    POST   /v1/users              {name, role, password} (administrator)
    PATCH  /v1/users/{name}       {role?, password?} (administrator)
    DELETE /v1/users/{name}       and every session of theirs (administrator)
    GET    /v1/audit?after=N      state-changing requests, oldest first (administrator)

Every state-changing request is written to the audit log once it is
answered: who (``user:NAME``, a role's client name, ``admin``), what (method
and path, never the body: it may hold passwords), when, and the status.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from vmdr.control.access import People, hash_password
from vmdr.control.db.models import AuditEntry, User, UserSession
from vmdr.control.server import AlreadyExists, NotFound

__all__ = ["OPEN", "add_user_routes"]

OPEN = frozenset({"/v1/login"})
log = logging.getLogger(__name__)
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RoleName = Literal["viewer", "operator", "administrator"]
# Not worth a line each: a role's heartbeat comes every 30 s.
UNAUDITED = frozenset({"/v1/roles/heartbeat"})


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(pattern=USER_NAME)
    password: str = Field(min_length=1, max_length=1024, repr=False)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=USER_NAME)
    role: RoleName
    password: str = Field(min_length=12, max_length=1024, repr=False)


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: RoleName | None = None
    password: str | None = Field(default=None, min_length=12, max_length=1024, repr=False)


def _user(u: User) -> dict[str, Any]:
    return {"name": u.name, "role": u.role, "created_at": u.created_at}


def add_user_routes(app: FastAPI, people: People) -> None:
    sessions = people.sessions

    @app.middleware("http")
    async def audit(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        path = request.scope["path"]
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and path not in UNAUDITED:
            principal = getattr(request.state, "client_name", None) or "(none)"
            await run_in_threadpool(_record, principal, request.method, path,
                                    response.status_code)  # fmt: skip
        return response

    def _record(principal: str, method: str, path: str, status: int) -> None:
        try:
            with sessions.begin() as s:
                s.add(AuditEntry(principal=principal[:128], method=method, path=path[:1024],
                                 status=status))  # fmt: skip
        except Exception:  # the answer is given; a lost line is logged, not raised
            log.exception("audit: %s %s by %s (%d) not recorded", method, path, principal, status)

    @app.post("/v1/login")
    def login(body: Login, request: Request) -> dict[str, Any]:
        """A session token for a person (shown once; it expires)."""
        request.state.client_name = f"user:{body.user}"  # for the audit line, ok or not
        return people.login(body.user, body.password)

    @app.post("/v1/logout")
    def logout(request: Request) -> dict[str, bool]:
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        people.logout(token)
        return {"ended": True}

    @app.get("/v1/users")
    def get_users() -> list[dict[str, Any]]:
        with sessions() as s:
            return [_user(u) for u in s.scalars(select(User).order_by(User.name))]

    @app.post("/v1/users", status_code=201)
    def post_user(body: NewUser) -> dict[str, Any]:
        try:
            with sessions.begin() as s:
                user = User(name=body.name, role=body.role,
                            password_hash=hash_password(body.password))  # fmt: skip
                s.add(user)
                s.flush()
                return _user(user)
        except IntegrityError:
            raise AlreadyExists(what="user", name=body.name) from None

    @app.patch("/v1/users/{name}")
    def patch_user(name: str, body: UserChange) -> dict[str, Any]:
        with sessions.begin() as s:
            user = _find(s, name)
            if body.role is not None:
                user.role = body.role
            if body.password is not None:
                user.password_hash = hash_password(body.password)
                s.execute(delete(UserSession).where(UserSession.user_id == user.id))
            return _user(user)

    @app.delete("/v1/users/{name}")
    def delete_user(name: str) -> dict[str, Any]:
        with sessions.begin() as s:
            user = _find(s, name)
            s.execute(delete(UserSession).where(UserSession.user_id == user.id))
            s.delete(user)
        return {"name": name, "deleted": True}

    @app.get("/v1/audit")
    def get_audit(
        after: int = Query(default=0, ge=0, le=2**62),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        with sessions() as s:
            rows = s.scalars(
                select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id)
                .limit(limit)
            )  # fmt: skip
            return [{"id": e.id, "at": e.at, "principal": e.principal, "method": e.method,
                     "path": e.path, "status": e.status} for e in rows]  # fmt: skip


def _find(s: Any, name: str) -> User:
    user: User | None = s.scalars(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFound(what="user", id=name)
    return user
