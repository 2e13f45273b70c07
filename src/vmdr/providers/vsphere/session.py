"""Log in to a vCenter (or ESX host) and talk to it safely.

Two habits here come from measuring the vCenter simulator (docs/emulators.md),
and are right against a real vCenter too:

- Properties are read through the PropertyCollector (``retrieve``), never by
  attribute: reading an unset property by attribute crashes that request inside
  the simulator, while the collector simply leaves the property out.
- Tasks are waited on by polling ``info.state`` through the collector, because
  ``pyVim.task.WaitForTask`` trips over tasks whose ``info.entity`` is not a
  managed entity (snapshot and virtual-disk tasks).

TLS is always verified, before anything (the password above all) is sent:
against the CA given (``ca_file``), else against a pinned SHA-256 fingerprint
of the certificate (``fingerprint``: that certificate becomes the only trust
anchor), else against the system's CAs; a certificate none of them
vouches for is refused with its fingerprint (``VSphereCertificateUntrusted``),
so the operator can compare it and pin it. Nothing turns checking off.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmdr.providers.vsphere.errors import (
    VSphereCertificateChanged,
    VSphereCertificateUnavailable,
    VSphereCertificateUntrusted,
    VSphereError,
    VSphereLoginFailed,
    VSphereSessionLost,
    VSphereTaskFailed,
    translate,
    vsphere_errors,
)
from vmdr.transport.tls import client_context

log = logging.getLogger(__name__)

__all__ = [
    "Connection",
    "Endpoint",
    "VSphereError",
    "VSphereLoginFailed",
    "VSphereTaskFailed",
    "connect",
    "disconnect",
    "normal_fingerprint",
    "objects_of_type",
    "pin_for",
    "presented_fingerprint",
    "retrieve",
    "session",
    "wait_for_task",
]


@dataclass(frozen=True)
class Endpoint:
    url: str  # https://host:port/sdk
    user: str
    password: str
    ca_file: Path | None = None
    fingerprint: str | None = None  # SHA-256 of the certificate (DER), lower-case hex

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443

    def __repr__(self) -> str:  # never show the password
        return f"Endpoint(url={self.url!r}, user={self.user!r})"


def presented_fingerprint(host: str, port: int, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate ``host:port`` presents
    (a handshake only: nothing is sent)."""
    pem = ssl.get_server_certificate((host, port), timeout=timeout)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def normal_fingerprint(value: str) -> str:
    """``AA:BB:…`` or ``aabb…`` as vmdr stores it: 64 lower-case hex digits."""
    return value.replace(":", "").strip().lower()


def pin_for(url: str, *, first_use: bool) -> str | None:
    """How a vCenter added without a CA certificate is trusted: by the
    system's CAs (None: nothing to pin), or, when the operator asked for it,
    by the fingerprint it presents now; otherwise refused with that
    fingerprint to compare (``VSphereCertificateUntrusted``)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with (
            socket.create_connection((host, port), timeout=10) as sock,
            ssl.create_default_context().wrap_socket(sock, server_hostname=host),
        ):
            return None  # the system's CAs vouch for it
    except ssl.SSLCertVerificationError:
        pass
    except (OSError, ValueError, UnicodeError) as exc:
        raise VSphereCertificateUnavailable(address=url, detail=str(exc)) from None
    try:
        seen = presented_fingerprint(host, port)
    except (OSError, ValueError, UnicodeError) as exc:
        raise VSphereCertificateUnavailable(address=url, detail=str(exc)) from None
    if not first_use:
        raise VSphereCertificateUntrusted(address=url, fingerprint=seen)
    log.warning("%s trusted on first use: certificate SHA-256 %s", url, seen)
    return seen


def connect(endpoint: Endpoint) -> Any:
    """Return a logged-in ServiceInstance; the caller must ``disconnect`` it.

    The stub is built first and logged in second (rather than ``SmartConnect``)
    so that a refused login can still close the stub's sockets.
    """
    with vsphere_errors(endpoint.url):
        if endpoint.ca_file:
            ctx = client_context(endpoint.ca_file)
        elif endpoint.fingerprint:
            ctx = _pinned_context(endpoint)
        else:
            ctx = ssl.create_default_context()
        return _login(endpoint, ctx)


def _pinned_context(endpoint: Endpoint) -> ssl.SSLContext:
    """A context that trusts exactly the certificate whose fingerprint is
    pinned: read it, compare, then make it the only trust anchor, so that a
    later connection that meets another certificate fails its handshake."""
    pin = normal_fingerprint(endpoint.fingerprint or "")
    pem = ssl.get_server_certificate((endpoint.host, endpoint.port), timeout=10)
    seen = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    if seen != pin:
        raise VSphereCertificateChanged(address=endpoint.url, expected=pin, actual=seen)
    ctx = ssl.create_default_context(cadata=pem)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    ctx.check_hostname = False  # the pin names the certificate, not the host name
    return ctx


def _login(endpoint: Endpoint, ctx: ssl.SSLContext) -> Any:
    from pyVim.connect import SmartStubAdapter
    from pyVmomi import vim

    try:
        stub = SmartStubAdapter(
            host=endpoint.host, port=endpoint.port, sslContext=ctx, connectionPoolTimeout=30
        )
    except ssl.SSLCertVerificationError as exc:
        if endpoint.ca_file or endpoint.fingerprint:
            raise
        try:
            seen = presented_fingerprint(endpoint.host, endpoint.port)
        except OSError:
            raise exc from None
        raise VSphereCertificateUntrusted(address=endpoint.url, fingerprint=seen) from None
    si: Any = vim.ServiceInstance("ServiceInstance", stub)
    try:
        si.content.sessionManager.Login(endpoint.user, endpoint.password, None)
    except vim.fault.InvalidLogin as exc:
        stub.DropConnections()
        raise VSphereLoginFailed(address=endpoint.url, user=endpoint.user) from exc
    except BaseException:
        stub.DropConnections()
        raise
    return si


def disconnect(si: Any) -> None:
    try:
        si.content.sessionManager.Logout()
    finally:
        # Disconnect logs out but leaves pooled sockets open until garbage collection.
        si._stub.DropConnections()


@contextmanager
def session(endpoint: Endpoint) -> Iterator[Any]:
    """A logged-in ServiceInstance; SDK errors inside become vmdr errors."""
    si = connect(endpoint)
    try:
        with vsphere_errors(endpoint.url):
            yield si
    finally:
        with vsphere_errors(endpoint.url):
            disconnect(si)


def retrieve(si: Any, obj: Any, paths: list[str]) -> dict[str, Any]:
    """Read ``paths`` of one managed object; unset properties are absent."""
    from pyVmomi import vmodl

    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=paths)],
    )
    result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    values: dict[str, Any] = {}
    if result:
        for content in result.objects:
            for prop in content.propSet or []:
                values[prop.name] = prop.val
    if not values:
        # The simulator answers a call on an expired session with no values
        # where vCenter raises NotAuthenticated. Nothing set is rare (a VM
        # without snapshots), so check then: an attribute read of an
        # always-set property raises NotAuthenticated on both, and
        # ``Connection`` renews the session.
        _ = si.content.rootFolder.name
    return values


def objects_of_type(si: Any, vimtype: Any) -> list[Any]:
    """All managed objects of one type under the root folder."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return list(view.view)
    finally:
        view.DestroyView()


def wait_for_task(si: Any, task: Any, timeout: float = 300.0) -> Any:
    """Wait for a vSphere task; return its result or raise VSphereTaskFailed."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = retrieve(si, task, ["info.state", "info.error", "info.result"])
        state = info.get("info.state")
        if state == "success":
            return info.get("info.result")
        if state == "error":
            raise translate(info.get("info.error"), task=task._moId)
        if time.monotonic() > deadline:
            raise VSphereTaskFailed(task=task._moId, detail=f"not done after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class Connection:
    """A vCenter session that renews itself once when it has expired.

    ``call(fn)`` runs ``fn(si)``; if vCenter answers ``NotAuthenticated``
    (the session timed out, or was ended by an administrator), it logs in
    again and retries once. A second refusal is an error: the credentials or
    the account changed."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.si = connect(endpoint)
        self.renewals = 0

    def call(self, fn: Any) -> Any:
        from pyVmomi import vim

        with vsphere_errors(self.endpoint.url):
            try:
                return fn(self.si)
            except vim.fault.NotAuthenticated:
                self.si._stub.DropConnections()
                self.si = connect(self.endpoint)
                self.renewals += 1
            try:
                return fn(self.si)
            except vim.fault.NotAuthenticated as exc:
                raise VSphereSessionLost(address=self.endpoint.url) from exc

    def close(self) -> None:
        from pyVmomi import vim

        try:
            disconnect(self.si)
        except vim.fault.NotAuthenticated:
            self.si._stub.DropConnections()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
