"""What every vmdr service shares: HTTPS only, token auth, problem details,
``/healthz`` and Prometheus ``/metrics``.

A service is a FastAPI app built by ``create_app`` and run by ``serve``
(uvicorn with httptools, TLS 1.2 or newer). Certificates come from the files a
caller names or, by default, from a private CA that vmdr makes on first use in
the service's state folder (``<state>/pki``).

Authentication: every route needs ``Authorization: Bearer <token>`` except
``/healthz`` (a liveness probe that reveals only "ok") and ``/v1/register``
(which needs the one-time passphrase instead). A refused request is logged
with its method, path, peer and reason — never with the header's value.

Errors leave as RFC 9457 problem details with vmdr's stable code::

    {"type": "about:blank", "title": "VMDR-E0351", "status": 401,
     "detail": "...", "code": "VMDR-E0351", "fix": "..."}
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from vmdr.model.errors import UsageError, VmdrError, validation_summary
from vmdr.transport.auth import Principal, TokenStore, Unauthorized
from vmdr.transport.errors import StreamIdle
from vmdr.transport.tls import CertPair, ensure_ca, issue_server_cert

__all__ = ["PublicPages", "ServiceSettings", "create_app", "problem", "serve", "tls_files"]

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/healthz", "/v1/register"})


@dataclass
class ServiceSettings:
    """Where a service listens and keeps its state."""

    name: str
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    cert: Path | None = None
    key: Path | None = None
    ca_dir: Path | None = None  # default: <state_dir>/pki
    extra_hosts: list[str] = field(default_factory=list)

    @property
    def pki(self) -> Path:
        return self.ca_dir or self.state_dir / "pki"


def tls_files(settings: ServiceSettings) -> tuple[CertPair, Path]:
    """The service's certificate and the CA file clients should trust."""
    ca = ensure_ca(settings.pki)
    if settings.cert and settings.key:
        return CertPair(settings.cert, settings.key), ca.cert
    hosts = sorted({settings.host, "127.0.0.1", "localhost", *settings.extra_hosts})
    return issue_server_cert(ca, settings.pki, settings.name, hosts), ca.cert


class PublicPages(Protocol):
    """Pages a service also serves, without a token because they hold no
    data (the dashboard, ``vmdr.web``): the exact paths and path prefixes
    they own, and how to add their routes."""

    open_paths: frozenset[str]
    open_prefixes: tuple[str, ...]

    def add_to(self, app: FastAPI) -> None: ...


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    passphrase: str = Field(min_length=1, max_length=256)


def problem(exc: VmdrError, status: int | None = None) -> JSONResponse:
    status = status or exc.http_status
    body = {
        "type": "about:blank",
        "title": exc.code,
        "status": status,
        "detail": exc.message,
        "code": exc.code,
        "fix": exc.remedy,
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def create_app(
    name: str,
    tokens: TokenStore,
    registry: CollectorRegistry,
    open_paths: frozenset[str] = frozenset(),
    open_prefixes: tuple[str, ...] = (),
    lifespan: Any = None,
    authenticate: Callable[[str | None], Principal] | None = None,
    authorize: Callable[[Principal, str, str], None] | None = None,
) -> FastAPI:
    """A FastAPI app with auth, problem details, /healthz, /metrics and
    /v1/register. ``open_paths`` are more routes that check a passphrase
    themselves instead of a token; ``open_prefixes`` serve only static files
    that hold no data (the dashboard's pages, which then call the API with
    the user's token). ``lifespan`` is Starlette's: what runs when the
    server stops (a clean stop of the jobs it runs). ``authenticate(header)``
    names the principal (default: a client of ``tokens``, an administrator);
    ``authorize(principal, method, route)`` raises a ``VmdrError`` (a 403)
    when it may not call the route (its template, e.g. ``/v1/jobs/{job_id}``),
    before the request is read or validated."""
    unauthenticated = OPEN_PATHS | open_paths
    app = FastAPI(title=f"vmdr {name}", version="1", lifespan=lifespan)
    requests = Counter(
        "vmdr_http_requests", "HTTP requests answered", ["status"], registry=registry
    )
    refused = Counter(
        "vmdr_http_refused", "requests refused for missing or wrong tokens", registry=registry
    )

    @app.middleware("http")
    async def check_principal(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # The path the router will use (scope), never one rebuilt from the
        # Host header; and pages are only ever read.
        path = request.scope["path"]
        page = request.method in ("GET", "HEAD") and path.startswith(open_prefixes)
        if path not in unauthenticated and not page:
            try:
                header = request.headers.get("authorization")
                # The token store is in memory; a service's own lookup may
                # touch its database, so it runs off the event loop.
                principal = (
                    Principal(tokens.authenticate(header))
                    if authenticate is None
                    else await run_in_threadpool(authenticate, header)
                )
            except Unauthorized as exc:
                refused.inc()
                peer = request.client.host if request.client else "?"
                log.warning(
                    "refused %s %s from %s: %s",
                    request.method,
                    request.url.path,
                    peer,
                    exc.message,
                )
                requests.labels("401").inc()
                return problem(exc)
            request.state.principal = principal
            request.state.client_name = principal.name
            if authorize is not None and (route := _route_of(app, request.scope)):
                try:
                    authorize(principal, request.method, route)
                except VmdrError as exc:
                    refused.inc()
                    log.warning("refused %s %s to %s: %s", request.method, path,
                                principal.name, exc.message)  # fmt: skip
                    requests.labels(str(exc.http_status)).inc()
                    return problem(exc)
        response = await call_next(request)
        requests.labels(str(response.status_code)).inc()
        return response

    @app.exception_handler(VmdrError)
    async def vmdr_error(request: Request, exc: VmdrError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return problem(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_summary(exc.errors())
        return problem(UsageError(detail=f"invalid request: {errors}"), 422)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/register")
    def register(body: Registration) -> dict[str, str]:
        """Trade the one-time passphrase for a token (shown once)."""
        token = tokens.register(body.name, body.passphrase)
        log.info("registered client %s", body.name)
        return {"name": body.name, "token": token}

    return app


async def body_chunks(request: Request, idle: float) -> AsyncIterator[bytes]:
    """The request body as it arrives; ``StreamIdle`` when nothing comes for
    ``idle`` seconds, so that a sender gone silent (a dead peer whose TCP
    connection never closes) does not hold what the handler holds."""
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), idle)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise StreamIdle(seconds=idle) from None
        yield chunk


def _keepalive_socket(host: str, port: int) -> socket.socket:
    """The listening socket, with TCP keepalive on the connections it
    accepts (inherited on Linux): a peer that vanished is noticed in about
    two minutes instead of the kernel's two hours."""
    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                else socket.AF_INET, reuse_port=False)  # fmt: skip
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return sock


def _route_of(app: FastAPI, scope: Any) -> str | None:
    """The template of the route that will answer (as the router will
    choose it), or None (a 404 or 405 follows)."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", ""))
    return None


# How often a running service looks at its certificate (renewal, a new file).
CERT_CHECK_SECONDS = 6 * 3600.0


def refresh_certificate(
    ctx: ssl.SSLContext, settings: ServiceSettings, seen: tuple[int, int] | None
) -> tuple[int, int]:
    """Renew the certificate vmdr issued if it needs it (``tls``), or notice
    that the operator's ``--cert`` files changed, and load the result into
    ``ctx``: handshakes from then on present it. Returns what was seen (the
    files' modification times), for the next call."""
    pair = tls_files(settings)[0]
    stamp = (pair.cert.stat().st_mtime_ns, pair.key.stat().st_mtime_ns)
    if stamp != seen:
        ctx.load_cert_chain(pair.cert, pair.key)
        if seen is not None:
            log.info("certificate %s loaded again", pair.cert)
    return stamp


def _refresh_forever(ctx: ssl.SSLContext, settings: ServiceSettings) -> None:
    seen = refresh_certificate(ctx, settings, None)
    while True:
        time.sleep(CERT_CHECK_SECONDS)
        try:
            seen = refresh_certificate(ctx, settings, seen)
        except (OSError, ssl.SSLError, ValueError) as exc:  # keep serving with the one loaded
            log.error("certificate not refreshed: %s", exc)


def serve(app: Any, settings: ServiceSettings, log_level: str = "info") -> None:
    """Run ``app`` over HTTPS (TLS 1.2+) until SIGINT/SIGTERM."""
    pair, _ = tls_files(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http="httptools",
        ssl_certfile=str(pair.cert),
        ssl_keyfile=str(pair.key),
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
    )
    config.load()
    assert config.ssl is not None  # set by load() from the files above
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    threading.Thread(target=_refresh_forever, args=(config.ssl, settings), daemon=True,
                     name="certificate").start()  # fmt: skip
    sock = _keepalive_socket(settings.host, settings.port)
    uvicorn.Server(config).run(sockets=[sock])
