"""Health probes of traffic endpoints: HTTP, HTTPS or a TCP connect.

A probe succeeds when an HTTP(S) GET of ``path`` answers the expected status
within the timeout, or when a TCP connection opens. HTTPS checks the
endpoint's certificate against the system's trust store, or against ``ca``
when the probe names a CA file; ``insecure`` turns checking off for an
endpoint that has none yet (said so in its health detail).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any, Literal

import httpx

__all__ = ["ProbeResult", "ProbeSpec", "probe"]


@dataclass(frozen=True)
class ProbeSpec:
    protocol: Literal["http", "https", "tcp"] = "http"
    port: int = 80
    path: str = "/"
    expect: int = 200
    interval: float = 10.0
    timeout: float = 5.0
    tolerated: int = 2
    ca: str | None = None
    insecure: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeSpec:
        return cls(**data)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def probe(address: str, spec: ProbeSpec) -> ProbeResult:
    if spec.protocol == "tcp":
        try:
            with socket.create_connection((address, spec.port), timeout=spec.timeout):
                return ProbeResult(True, f"tcp {address}:{spec.port} open")
        except OSError as exc:
            return ProbeResult(False, f"tcp {address}:{spec.port}: {exc.strerror or exc}")
    verify: ssl.SSLContext | bool = True
    if spec.protocol == "https" and spec.ca:
        verify = ssl.create_default_context(cafile=spec.ca)
    elif spec.insecure:
        verify = False
    url = f"{spec.protocol}://{address}:{spec.port}{spec.path}"
    try:
        with httpx.Client(verify=verify, timeout=spec.timeout, follow_redirects=False) as client:
            status = client.get(url).status_code
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"GET {url}: {type(exc).__name__}: {exc}")
    if status != spec.expect:
        return ProbeResult(False, f"GET {url}: {status}, expected {spec.expect}")
    return ProbeResult(True, f"GET {url}: {status}")
