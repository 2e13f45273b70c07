"""AzureCompute at the HTTP request level.

No Azure compute emulator exists, so these tests replace the HTTP session
under azure-core's RequestsTransport with a recorder that answers like Azure
Resource Manager (a small in-memory model of disks and VMs) and check the
method, URL and JSON body of every request the SDK sends. They prove what
vmdr asks Azure to do, not that Azure accepts it (docs/azure.md).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from requests.structures import CaseInsensitiveDict

from vmdr.providers.azure.accounts import StorageAccount, register
from vmdr.providers.azure.azure_compute import AzureCompute
from vmdr.providers.azure.compute import DEALLOCATED, RUNNING
from vmdr.providers.azure.errors import CloudComputeFailed, CloudVmExists, CloudVmNotFound

SUB = "00000000-0000-4000-8000-000000000001"
RG = "dr-recovery"
SUBNET = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
    "/virtualNetworks/dr-vnet/subnets/apps"
)
DISKS = [
    "pageblob://drreplicas/replicas/web-01-disk0",
    "pageblob://drreplicas/replicas/web-01-disk1",
]


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class FakeArm(requests.Session):
    """Records each request and answers it like ARM would."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.resources: dict[str, dict[str, Any]] = {}
        self.power: dict[str, str] = {}
        self.fail_next: tuple[int, str] | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(url)
        raw = kwargs.get("data")
        body = json.loads(raw) if raw else None
        self.sent.append(
            Sent(method, parts.path, parse_qs(parts.query), dict(kwargs.get("headers") or {}), body)
        )
        status, payload = self._answer(method, parts.path.rstrip("/"), body)
        return _response(method, url, status, payload)

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.fail_next is not None:
            status, code = self.fail_next
            self.fail_next = None
            return status, {"error": {"code": code, "message": f"{code} (from the fake)"}}
        name = path.rsplit("/", 1)[-1]
        if method == "PUT":
            resource = dict(body)
            resource.update(id=path, name=name)
            resource["properties"] = {
                **resource.get("properties", {}),
                "provisioningState": "Succeeded",
            }
            self.resources[path] = resource
            if "/virtualMachines/" in path:
                self.power[path] = "PowerState/running"  # Azure boots what it creates
            return 200, resource
        if method == "POST":
            vm = path.rsplit("/", 1)[0]
            if vm not in self.resources:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such VM"}}
            action = name
            self.power[vm] = {
                "start": "PowerState/running",
                "deallocate": "PowerState/deallocated",
            }[action]
            return 200, None
        if path not in self.resources:
            return 404, {"error": {"code": "ResourceNotFound", "message": f"{name} not found"}}
        if method == "DELETE":
            del self.resources[path]
            return 200, None
        resource = json.loads(json.dumps(self.resources[path]))
        if path in self.power:
            resource["properties"]["instanceView"] = {
                "statuses": [
                    {"code": "ProvisioningState/succeeded"},
                    {"code": self.power[path]},
                ]
            }
        return 200, resource


def _response(method: str, url: str, status: int, payload: Any) -> requests.Response:
    content = json.dumps(payload).encode() if payload is not None else b""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(content))}
    resp = requests.Response()
    resp.status_code = status
    resp.reason = "OK" if status < 400 else "Error"
    resp.headers = CaseInsensitiveDict(headers)
    resp.url = url
    resp.request = requests.Request(method, url).prepare()
    resp.raw = urllib3.HTTPResponse(
        body=io.BytesIO(content), headers=headers, status=status, preload_content=False
    )
    return resp


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://management.azure.com/.default",)
        return AccessToken("fake-token", int(time.time()) + 3600)


@pytest.fixture
def arm() -> Iterator[tuple[AzureCompute, FakeArm]]:
    register(StorageAccount("drreplicas", "https://drreplicas.blob.core.windows.net", "a2V5"))
    fake = FakeArm()
    compute = AzureCompute(
        SUB, RG, "westeurope",
        credential=FakeCredential(),
        transport=RequestsTransport(session=fake, session_owner=False),
        polling_interval=0,
    )  # fmt: skip
    yield compute, fake


def _base(kind: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/{kind}/{name}"


def test_create_imports_each_page_blob_and_attaches_the_disks(
    arm: tuple[AzureCompute, FakeArm],
) -> None:
    compute, fake = arm
    vm = compute.create_from_disks("web-01", DISKS, "Standard_D2s_v5", SUBNET)
    calls = [(s.method, s.path) for s in fake.sent]
    assert calls == [
        ("GET", _base("virtualMachines", "web-01")),  # does it exist already?
        ("PUT", _base("disks", "web-01-disk0")),
        ("PUT", _base("disks", "web-01-disk1")),
        ("PUT", _base("virtualMachines", "web-01")),
    ]
    for sent in fake.sent:
        assert sent.headers["Authorization"] == "Bearer fake-token"
        assert sent.query["api-version"]  # pinned by the SDK

    os_disk, data_disk, vm_put = (s.body for s in fake.sent[1:])
    assert os_disk["location"] == "westeurope" and os_disk["sku"] == {"name": "Standard_LRS"}
    assert os_disk["properties"]["creationData"] == {
        "createOption": "Import",
        "sourceUri": "https://drreplicas.blob.core.windows.net/replicas/web-01-disk0",
        "storageAccountId": (
            f"/subscriptions/{SUB}/resourceGroups/{RG}"
            "/providers/Microsoft.Storage/storageAccounts/drreplicas"
        ),
    }
    assert os_disk["properties"]["osType"] == "Linux"
    assert os_disk["properties"]["hyperVGeneration"] == "V1"
    assert "osType" not in data_disk["properties"]
    assert data_disk["properties"]["creationData"]["sourceUri"].endswith("/web-01-disk1")

    props = vm_put["properties"]
    assert props["hardwareProfile"] == {"vmSize": "Standard_D2s_v5"}
    storage = props["storageProfile"]
    assert storage["osDisk"] == {
        "createOption": "Attach",
        "osType": "Linux",
        "managedDisk": {"id": _base("disks", "web-01-disk0")},
    }
    assert storage["dataDisks"] == [
        {"lun": 0, "createOption": "Attach", "managedDisk": {"id": _base("disks", "web-01-disk1")}}
    ]
    assert "imageReference" not in storage and "osProfile" not in props  # attach, not provision
    network = props["networkProfile"]
    assert network["networkApiVersion"] == "2020-11-01"
    (nic,) = network["networkInterfaceConfigurations"]
    assert nic["name"] == "web-01-nic" and nic["properties"]["deleteOption"] == "Delete"
    (ipconf,) = nic["properties"]["ipConfigurations"]
    assert ipconf["properties"]["subnet"] == {"id": SUBNET}
    assert vm_put["tags"] == {
        "vmdr_disk0": DISKS[0],
        "vmdr_disk1": DISKS[1],
        "vmdr_network": SUBNET,
    }
    assert vm.disks == tuple(DISKS) and vm.network == SUBNET and vm.size == "Standard_D2s_v5"

    with pytest.raises(CloudVmExists):
        compute.create_from_disks("web-01", DISKS, "Standard_D2s_v5", SUBNET)


def test_power_and_status_requests(arm: tuple[AzureCompute, FakeArm]) -> None:
    compute, fake = arm
    compute.create_from_disks("web-01", DISKS[:1], "Standard_B2s", SUBNET)
    fake.sent.clear()
    assert compute.start("web-01").state == RUNNING
    assert compute.stop("web-01").state == DEALLOCATED  # stop releases the compute
    calls = [(s.method, s.path, s.query.get("$expand")) for s in fake.sent]
    vm = _base("virtualMachines", "web-01")
    assert calls == [
        ("POST", f"{vm}/start", None),
        ("GET", vm, ["instanceView"]),
        ("POST", f"{vm}/deallocate", None),
        ("GET", vm, ["instanceView"]),
    ]


def test_delete_removes_the_vm_then_its_imported_disks(arm: tuple[AzureCompute, FakeArm]) -> None:
    compute, fake = arm
    compute.create_from_disks("web-01", DISKS, "Standard_B2s", SUBNET)
    fake.sent.clear()
    compute.delete("web-01")
    assert [(s.method, s.path) for s in fake.sent] == [
        ("GET", _base("virtualMachines", "web-01")),
        ("DELETE", _base("virtualMachines", "web-01")),
        ("DELETE", _base("disks", "web-01-disk0")),
        ("DELETE", _base("disks", "web-01-disk1")),
    ]
    fake.sent.clear()
    compute.delete("web-01")  # already gone: one look, nothing deleted
    assert [s.method for s in fake.sent] == ["GET"]
    with pytest.raises(CloudVmNotFound):
        compute.status("web-01")
    with pytest.raises(CloudVmNotFound):
        compute.start("web-01")


def test_service_refusals_become_vmdr_errors(arm: tuple[AzureCompute, FakeArm]) -> None:
    compute, fake = arm
    compute.create_from_disks("web-01", DISKS[:1], "Standard_B2s", SUBNET)
    fake.fail_next = (409, "OperationNotAllowed")
    with pytest.raises(CloudComputeFailed) as info:
        compute.start("web-01")
    assert info.value.code == "VMDR-E0713" and "OperationNotAllowed" in str(info.value)
