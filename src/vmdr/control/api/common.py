"""What the configuration server's routes share."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["NAME", "job_accepted"]

# A name of something a user made (a site, a vCenter, a VM).
NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"


def job_accepted(job_id: str, **fields: Any) -> JSONResponse:
    """202 Accepted for a job just started: its id, URL and a Location header."""
    body = {**fields, "job": job_id, "url": f"/v1/jobs/{job_id}"}
    return JSONResponse(body, status_code=202, headers={"location": body["url"]})
