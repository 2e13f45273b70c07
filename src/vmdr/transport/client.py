"""A client of one vmdr service: HTTPS against the vmdr CA, a bearer token,
and problem details turned back into errors with their codes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx

from vmdr.model.errors import VmdrError
from vmdr.transport.tls import client_context

__all__ = ["RemoteError", "ServiceClient", "ServiceUnreachable"]


class RemoteError(VmdrError):
    """An error a service answered with; ``code`` is the service's code."""

    code = "VMDR-E0354"
    msg = "{service} answered {status}: {detail}"

    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)
        self.remote_code: str = fields.get("remote_code", "")
        self.status: int = fields.get("status", 0)

    @property
    def remedy(self) -> str:
        return str(self.fields.get("remote_fix", ""))

    def to_dict(self) -> dict[str, Any]:
        """The service's own code first: that is the one scripts match on."""
        out = super().to_dict()
        out.update(code=self.remote_code or self.code, status=self.status, via=self.code)
        return out

    def __str__(self) -> str:
        text = f"{self.remote_code or self.code}: {self.message}"
        return f"{text}\n  fix: {self.remedy}" if self.remedy else text


class ServiceUnreachable(VmdrError):
    code = "VMDR-E0355"
    msg = "{service} at {url} is unreachable: {detail}"
    fix = "Check that it runs (`vmdr lab status` in the lab) and that this machine can reach it."
    http_status = 503


def _raise_for(service: str, response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {"detail": response.text[:200]}
    raise RemoteError(
        service=service,
        status=response.status_code,
        detail=body.get("detail", ""),
        remote_code=body.get("code", ""),
        remote_fix=body.get("fix", ""),
    )


class ServiceClient:
    """``get``/``post``/``put``/``delete`` returning JSON; ``stream_post`` for
    frame streams. Network failures raise ``ServiceUnreachable``."""

    def __init__(
        self,
        service: str,
        url: str,
        ca_file: Path,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.service, self.url = service, url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url,
            verify=client_context(ca_file),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(service=self.service, url=self.url, detail=str(exc)) from exc
        _raise_for(self.service, response)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def fetch(self, path: str, **kwargs: Any) -> bytes:
        """GET a binary answer whole."""
        try:
            response = self._http.get(path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(service=self.service, url=self.url, detail=str(exc)) from exc
        _raise_for(self.service, response)
        return response.content

    def upload(
        self, path: str, chunks: Iterable[bytes], headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """POST a streamed body (chunked) and return the JSON answer."""
        return self.request(
            "POST",
            path,
            content=chunks,
            headers={"content-type": "application/octet-stream", **(headers or {})},
            **kwargs,
        )

    @contextmanager
    def download(self, path: str, body: Any = None) -> Iterator[Iterator[bytes]]:
        """POST ``body`` and iterate the streamed answer's bytes."""
        try:
            with self._http.stream("POST", path, json=body) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(self.service, response)
                yield response.iter_raw()
        except httpx.TransportError as exc:
            raise ServiceUnreachable(service=self.service, url=self.url, detail=str(exc)) from exc

    @classmethod
    def register(cls, service: str, url: str, ca_file: Path, name: str, passphrase: str) -> str:
        """Register ``name`` with the service; returns its token."""
        with cls(service, url, ca_file) as client:
            answer = client.post("/v1/register", {"name": name, "passphrase": passphrase})
        return str(answer["token"])
