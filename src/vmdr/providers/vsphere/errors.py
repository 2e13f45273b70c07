"""vSphere failures as vmdr errors, mapped once at the provider's edge.

pyVmomi raises ``vim.fault.*`` / ``vmodl.fault.*`` objects (and a task reports
the same objects in ``info.error``), plus socket and TLS errors when the
vCenter cannot be reached. Nothing above ``providers/`` should have to know
those types: ``translate`` turns each into an error with a stable code, the
vCenter's own message, and what to do about it.

    VSphereError               VMDR-E0600  anything not named below
    ├── VSphereLoginFailed     VMDR-E0601  wrong user or password
    ├── VSphereTaskFailed      VMDR-E0602  a task ended in error (other faults)
    ├── VmNotFound             VMDR-E0603  (control.py) no VM of that name
    ├── VSphereUnreachable     VMDR-E0604  refused, timed out, TLS failure
    ├── WrongEndpointKind      VMDR-E0605  a vCenter registered as ESX or back
    ├── VSphereNoPermission    VMDR-E0606  the user lacks a privilege
    ├── VSphereObjectGone      VMDR-E0607  the object was deleted meanwhile
    ├── VSphereInvalidState    VMDR-E0608  wrong power state, busy, in a task
    ├── VSphereFileError       VMDR-E0609  file missing, exists, locked
    └── VSphereSessionLost     VMDR-E0610  not authenticated even after re-login
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vmdr.model.errors import VmdrError

__all__ = [
    "VSphereError",
    "VSphereFileError",
    "VSphereInvalidState",
    "VSphereLoginFailed",
    "VSphereNoPermission",
    "VSphereObjectGone",
    "VSphereSessionLost",
    "VSphereTaskFailed",
    "VSphereUnreachable",
    "WrongEndpointKind",
    "translate",
    "vsphere_errors",
]


class VSphereError(VmdrError):
    code = "VMDR-E0600"
    http_status = 502
    msg = "vSphere call failed: {detail}"
    fix = "Check the vCenter address, credentials and the task's error above."


class VSphereLoginFailed(VSphereError):
    code = "VMDR-E0601"
    msg = "vCenter {address} refused the login of {user}"
    fix = "Check the user and password stored for this vCenter."


class VSphereTaskFailed(VSphereError):
    code = "VMDR-E0602"
    msg = "vSphere task {task} failed: {detail}"
    fix = "Read the fault above; fix its cause in vCenter and retry."


class VSphereUnreachable(VSphereError):
    code = "VMDR-E0604"
    http_status = 503
    msg = "cannot reach {address}: {detail}"
    fix = (
        "Check the address and port, that the vCenter or ESX host is up, the "
        "firewall between, and that its certificate is signed by the CA given."
    )


class WrongEndpointKind(VSphereError):
    code = "VMDR-E0605"
    http_status = 409
    msg = "{address} answers as {actual} but was added as {expected}"
    fix = (
        'Set the right kind (PATCH /v1/vcenters/ID with {{"kind": "esx"}} for an '
        'ESX host no vCenter manages, "vcenter" for a vCenter) and discover again.'
    )


class VSphereNoPermission(VSphereError):
    code = "VMDR-E0606"
    http_status = 403
    msg = "the vCenter user may not do this: missing privilege {privilege} ({detail})"
    fix = (
        "Give the vmdr user a role with the privileges listed by "
        "docs/vsphere.md, on the whole vCenter."
    )


class VSphereObjectGone(VSphereError):
    code = "VMDR-E0607"
    http_status = 404
    msg = "{what} no longer exists in vSphere ({detail})"
    fix = "Refresh discovery: it was deleted or moved while vmdr worked on it."


class VSphereInvalidState(VSphereError):
    code = "VMDR-E0608"
    http_status = 409
    msg = "vSphere refused in the object's current state: {detail}"
    fix = "Wait for tasks running on the VM to end, check its power state, and retry."


class VSphereFileError(VSphereError):
    code = "VMDR-E0609"
    http_status = 409
    msg = "datastore file problem: {detail}"
    fix = "Check the file on the datastore (missing, already there, or locked by another VM)."


class VSphereSessionLost(VSphereError):
    code = "VMDR-E0610"
    http_status = 503
    msg = "the vCenter session at {address} ended and a new login did not hold"
    fix = "Check that the vmdr user is not being logged out by an administrator or a policy."


class VSphereCertificateUntrusted(VSphereError):
    code = "VMDR-E0611"
    http_status = 409
    msg = (
        "{address} presents a certificate vmdr cannot verify and none is pinned; "
        "its SHA-256 fingerprint is {fingerprint}"
    )
    fix = (
        "Compare the fingerprint with the one the vCenter or ESX host shows, then add it with "
        '"fingerprint": "{fingerprint}" (or "trust_on_first_use": true), or give its CA ("ca_pem").'
    )


class VSphereCertificateUnavailable(VSphereError):
    code = "VMDR-E0613"
    http_status = 409
    msg = "cannot read the certificate of {address} to decide whether to trust it: {detail}"
    fix = (
        'Check the address and that it is up; or add it with its CA ("ca_pem") or its '
        'certificate\'s SHA-256 ("fingerprint"), which need no connection now.'
    )


class VSphereCertificateChanged(VSphereError):
    code = "VMDR-E0612"
    http_status = 409
    msg = (
        "{address} presents a certificate with SHA-256 fingerprint {actual}, not the pinned "
        "{expected}: nothing was sent to it"
    )
    fix = (
        "If the certificate was renewed on purpose, pin the new fingerprint "
        '(PATCH /v1/vcenters/ID {{"fingerprint": ...}}); otherwise something stands between.'
    )


def _message(fault: Any) -> str:
    text = getattr(fault, "msg", None) or ""
    if not text:
        for message in getattr(fault, "faultMessage", None) or []:
            text = getattr(message, "message", "") or ""
            if text:
                break
    return text or type(fault).__name__.rsplit(".", 1)[-1]


def translate(fault: BaseException | Any, address: str = "vCenter", task: str = "") -> VmdrError:
    """The vmdr error for one pyVmomi fault or connection error."""
    from pyVmomi import vim, vmodl

    if isinstance(fault, VmdrError):
        return fault
    detail = _message(fault)
    if isinstance(fault, vim.fault.InvalidLogin):
        return VSphereLoginFailed(address=address, user="the stored user")
    if isinstance(fault, vim.fault.NotAuthenticated):
        return VSphereSessionLost(address=address)
    if isinstance(fault, vim.fault.NoPermission):
        return VSphereNoPermission(privilege=fault.privilegeId or "?", detail=detail)
    if isinstance(fault, vmodl.fault.ManagedObjectNotFound):
        obj = getattr(fault, "obj", None)
        what = "object"
        if obj is not None:
            what = f"{type(obj).__name__.rsplit('.', 1)[-1]} {obj._moId}"
        return VSphereObjectGone(what=what, detail=detail)
    if isinstance(fault, vim.fault.InvalidPowerState | vim.fault.TaskInProgress):
        return VSphereInvalidState(detail=detail)
    if isinstance(fault, vim.fault.InvalidState):
        return VSphereInvalidState(detail=detail)
    if isinstance(fault, vim.fault.FileFault):
        return VSphereFileError(detail=f"{detail} {getattr(fault, 'file', '') or ''}".strip())
    if isinstance(fault, ssl.SSLError | ConnectionError | TimeoutError | http.client.HTTPException):
        return VSphereUnreachable(address=address, detail=str(fault) or type(fault).__name__)
    if isinstance(fault, OSError):
        return VSphereUnreachable(address=address, detail=str(fault))
    if task:
        return VSphereTaskFailed(task=task, detail=detail)
    return VSphereError(detail=detail)


@contextmanager
def vsphere_errors(address: str = "vCenter") -> Iterator[None]:
    """Re-raise SDK and connection errors as vmdr errors (the provider's edge)."""
    from pyVmomi import vmodl

    try:
        yield
    except VmdrError:
        raise
    except (vmodl.MethodFault, OSError, http.client.HTTPException) as exc:
        raise translate(exc, address) from exc
