"""The configuration server's REST API: one FastAPI app whose routes each
``api/`` module adds (what they do lives in ``control/workflows`` and the
other ``control`` modules, the server itself in ``control/server.py``).

Served by ``vmdr serve configuration-server`` over HTTPS with token auth
(``transport.service``); on first start it writes an admin token to
``<state>/admin.token`` (mode 0600). OpenAPI is at ``/openapi.json``.

    /v1/sites, /v1/vcenters, /v1/hosts, /v1/datastores, /v1/machines   api/inventory.py
    /v1/protected-items…                                              api/items.py
    /v1/recovery-plans…                                               api/plans.py
    /v1/replication-groups…                                           api/groups.py
    /v1/jobs…                                                         api/jobs.py
    /v1/overview                                                      api/overview.py
    /v1/traffic-profiles…                                             api/traffic.py
    /v1/process-servers, /v1/master-targets, /v1/tokens…              api/roles.py
    /v1/server/backup, /v1/server/restore                            api/server.py
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.orm.exc import StaleDataError
from starlette.concurrency import run_in_threadpool

from vmdr.blocks.durable import write_atomically
from vmdr.control.access import People
from vmdr.control.api.groups import add_group_routes
from vmdr.control.api.inventory import add_inventory_routes
from vmdr.control.api.items import add_item_routes
from vmdr.control.api.jobs import add_job_routes
from vmdr.control.api.overview import add_overview_routes
from vmdr.control.api.plans import add_plan_routes
from vmdr.control.api.roles import OPEN, add_role_routes, authorize
from vmdr.control.api.server import add_server_routes
from vmdr.control.api.traffic import add_traffic_routes
from vmdr.control.api.users import OPEN as USERS_OPEN
from vmdr.control.api.users import add_user_routes
from vmdr.control.scripts import scripts_folder
from vmdr.control.server import (
    ChangedMeanwhile,
    ConfigServer,
    ConfigServerSettings,
)
from vmdr.transport.auth import TokenStore
from vmdr.transport.service import PublicPages, create_app, problem

log = logging.getLogger(__name__)

__all__ = ["build_app"]

# Seconds a clean stop gives running steps (the lab stops with SIGKILL after 10).
STOP_WAIT = 5.0


def build_app(
    settings: ConfigServerSettings, tokens: TokenStore, pages: PublicPages | None = None
) -> FastAPI:
    """The configuration server's app; ``pages`` (the dashboard, added by
    ``vmdr serve``) share its port and its tokens."""
    registry = CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # A clean stop ends this worker's lease at once, so that a restart
        # (or another worker) resumes what is left without waiting it out.
        cs.traffic.stop.set()
        await run_in_threadpool(cs.stop_worker, STOP_WAIT)

    app = create_app(
        "configuration-server",
        tokens,
        registry,
        open_paths=OPEN | USERS_OPEN | (pages.open_paths if pages else frozenset()),
        open_prefixes=pages.open_prefixes if pages else (),
        lifespan=lifespan,
        authenticate=lambda header: people.authenticate(header),
        authorize=authorize,
    )
    if pages is not None:
        pages.add_to(app)

    @app.exception_handler(StaleDataError)
    async def changed_meanwhile(request: Request, exc: StaleDataError) -> JSONResponse:
        # Two requests (or a request and a job) changed the same row: the
        # second is refused whole, nothing of it is written.
        return problem(ChangedMeanwhile(what=request.url.path))

    cs = ConfigServer(settings)
    people = People(cs.sessions, tokens)
    add_user_routes(app, people)
    add_role_routes(app, cs.sessions, tokens, lambda: cs.secrets.grant_signer().public_pem())
    add_item_routes(app, cs.workflows)
    traffic = cs.traffic
    add_traffic_routes(app, traffic)
    add_plan_routes(app, cs.workflows)
    add_job_routes(app, cs.workflows)
    add_overview_routes(app, cs.workflows)
    add_group_routes(app, cs.workflows)
    add_inventory_routes(app, cs)
    add_server_routes(app, cs, tokens)
    scripts_folder(settings.state_dir)
    app.state.config_server = cs
    admin = settings.state_dir / "admin.token"
    if not admin.exists():
        write_atomically(admin, tokens.issue("admin").encode())
    if settings.worker or cs.engine.dialect.name == "sqlite":
        cs.start_worker()
    else:
        cs.jobs.prepare_schema()  # the engine's tables, for submitting jobs
    traffic.start()

    return app
