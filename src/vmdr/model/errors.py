"""The one error tree of vmdr.

Every error a user can meet has a stable code (``VMDR-E<area><nn>``), a one-line
cause rendered from the class's ``msg`` template, and the fix. The CLI prints
them and exits with ``exit_code``; the REST API returns them as problem details.

    VmdrError
    ├── UsageError             bad input from a user (exit 2)
    ├── DependencyMissing      a program or package vmdr needs is not installed
    ├── LabError               the embedded lab cannot start, stop or report
    │   ├── LabAlreadyRunning
    │   ├── LabNotRunning
    │   ├── PortInUse
    │   └── ServiceFailed
    └── (areas added by later layers: blocks, transport, control, ...)

Library exceptions are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class VmdrError(Exception):
    """Base of every vmdr error: a code, a cause and a fix."""

    code: ClassVar[str] = "VMDR-E0000"
    msg: ClassVar[str] = "{detail}"
    fix: ClassVar[str] = ""
    exit_code: ClassVar[int] = 1
    # What a service answers when this error ends a request: 409 says "the
    # request was understood, but the system's state does not allow it".
    http_status: ClassVar[int] = 409

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.msg.format(**self.fields)

    @property
    def remedy(self) -> str:
        return self.fix.format(**self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "fix": self.remedy}

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        return f"{text}\n  fix: {self.remedy}" if self.remedy else text


class UsageError(VmdrError):
    code = "VMDR-E0001"
    msg = "{detail}"
    exit_code = 2
    http_status = 400


class DependencyMissing(VmdrError):
    code = "VMDR-E0002"
    msg = "{what} is not installed or not found at {where}"
    fix = "Run `make bootstrap` (or `make demo` / `make test`), which installs it."
    exit_code = 3


class LabError(VmdrError):
    code = "VMDR-E0100"
    msg = "{detail}"


class LabAlreadyRunning(LabError):
    code = "VMDR-E0101"
    msg = "a lab is already running in {directory} (services: {services})"
    fix = "Use it (`vmdr lab status`) or stop it first with `vmdr lab down --dir {directory}`."


class LabNotRunning(LabError):
    code = "VMDR-E0102"
    msg = "no lab is running in {directory}"
    fix = "Start one with `vmdr lab up --dir {directory}`."


class PortInUse(LabError):
    code = "VMDR-E0103"
    msg = "port {port} on 127.0.0.1 is already in use (wanted by {service})"
    fix = "Free the port, or leave the port unset so the lab picks a free one."


class ServiceFailed(LabError):
    code = "VMDR-E0104"
    msg = "{service} did not start: {detail}"
    fix = "Read its log at {log}; nothing the lab started was left running."


def validation_summary(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's validation errors in one line, ``where: what; ...`` (the
    form every edge reports them in: requests, job parameters, files)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or '-'}: {e.get('msg')}" for e in errors
    )
