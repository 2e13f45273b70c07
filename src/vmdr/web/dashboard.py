"""The dashboard: web pages served by the configuration server itself.

Same HTTPS port, same tokens. The pages (``web/ui``: HTML, CSS and
JavaScript modules, no build step, nothing fetched from the internet) hold
no data and need no token. Their login page trades a user name and password
for a session token (``POST /v1/login``, it expires; an administrator may
paste a token instead), keeps it in the tab's ``sessionStorage`` and calls
the JSON API with ``Authorization: Bearer``, exactly like the CLI; logging
out ends the session on the server (``POST /v1/logout``). So the browser sends no
ambient credential (no cookie): a page of another site cannot act as the
user (no CSRF), and the API needs no second way in.

Every page answer carries a strict Content-Security-Policy: scripts, styles
and connections only from this origin, no inline script, no framing. The
scripts build the page with ``textContent`` only, never with HTML strings,
so a VM name from vSphere cannot become markup.

    GET /                 → 303 to /ui/
    GET /ui/              the application (index.html)
    GET /ui/static/...    its assets
    GET /v1/session       who the token belongs to and their role (the login check)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["Dashboard"]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class Dashboard:
    """The dashboard as ``transport.service.PublicPages``."""

    open_paths: frozenset[str] = frozenset({"/", "/ui"})
    open_prefixes: tuple[str, ...] = ("/ui/",)

    def add_to(self, app: FastAPI) -> None:
        add_dashboard(app)


def ui_folder() -> Path:
    return Path(str(resources.files("vmdr.web") / "ui"))


def add_dashboard(app: FastAPI) -> None:
    folder = ui_folder()
    index = folder / "index.html"

    @app.middleware("http")
    async def page_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/ui"):
            response.headers.update(HEADERS)
            # The pages change with vmdr's version; never serve a stale script.
            response.headers["cache-control"] = "no-cache"
        return response

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8")

    app.mount("/ui/static", StaticFiles(directory=folder / "static"), name="ui-static")

    @app.get("/v1/session")
    def session(request: Request) -> dict[str, Any]:
        """Who the token was issued to and the role they act with (the
        dashboard's login check; it hides what the role may not do)."""
        principal = getattr(request.state, "principal", None)
        return {
            "client": getattr(request.state, "client_name", None),
            "role": getattr(principal, "role", None),
        }
