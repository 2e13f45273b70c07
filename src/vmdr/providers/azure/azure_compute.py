"""``CloudCompute`` on Azure, with azure-mgmt-compute and azure-identity.

``create_from_disks`` imports each replica page blob into a managed disk
(``createOption: Import`` from the blob's https URL; the blob must hold a
fixed VHD, see ``vhd.append_footer``) and creates a VM that attaches them:
the first as the OS disk, the rest as data disks (LUN 0, 1, ...). Its one NIC
is created with the VM from ``network``, a subnet resource id
(``networkInterfaceConfigurations``, network API 2020-11-01, deleted with
the VM), so no azure-mgmt-network dependency is needed. ``stop``
deallocates (no compute billing while failed back); ``delete`` deletes the
VM and then the managed disks it was made with (a delete interrupted between
the two leaves disks named ``<vm>-disk<i>``). A created VM is already
booting (Azure has no "create stopped"); ``start`` after it does nothing.

No Azure compute emulator exists: this module is tested at the HTTP request
level only (tests/unit/providers/test_azure_compute.py replaces azure-core's
transport and checks method, URL and body of each request).

Resource names: the managed disks are ``<vm>-disk<i>``; the VM's tags record
the source URLs (``vmdr_disk<i>``) and the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    CreationData,
    DataDisk,
    Disk,
    DiskProperties,
    DiskSku,
    HardwareProfile,
    ManagedDiskParameters,
    NetworkProfile,
    OSDisk,
    StorageProfile,
    SubResource,
    VirtualMachine,
    VirtualMachineNetworkInterfaceConfiguration,
    VirtualMachineNetworkInterfaceConfigurationProperties,
    VirtualMachineNetworkInterfaceIPConfiguration,
    VirtualMachineNetworkInterfaceIPConfigurationProperties,
    VirtualMachineProperties,
)

from vmdr.providers.azure.accounts import lookup
from vmdr.providers.azure.blobs import error_text, parse_url
from vmdr.providers.azure.compute import (
    DEALLOCATED,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    UNKNOWN,
    CloudCompute,
    CloudVm,
)
from vmdr.providers.azure.errors import (
    CloudComputeFailed,
    CloudVmExists,
    CloudVmNotFound,
    CloudWritesUnknown,
)

log = logging.getLogger(__name__)

__all__ = ["AzureCompute", "power_state"]

T = TypeVar("T")

NETWORK_API_VERSION = "2020-11-01"
_POWER = {
    "PowerState/running": RUNNING,
    "PowerState/starting": STARTING,
    "PowerState/stopping": STOPPING,
    "PowerState/deallocating": STOPPING,
    "PowerState/stopped": STOPPED,
    "PowerState/deallocated": DEALLOCATED,
}


def power_state(vm: VirtualMachine) -> str:
    """The VM's power state from its instance view (``expand=instanceView``)."""
    view = vm.properties.instance_view if vm.properties else None
    for status in view.statuses if view and view.statuses else []:
        if status.code and status.code.startswith("PowerState/"):
            return _POWER.get(status.code, UNKNOWN)
    return UNKNOWN


class AzureCompute(CloudCompute):
    knows_writes = False  # until its managed disks are read through snapshots (issue 22)

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        location: str,
        *,
        credential: TokenCredential | None = None,
        storage_resource_group: str | None = None,
        os_type: str = "Linux",
        hyper_v_generation: str = "V1",
        disk_sku: str = "Standard_LRS",
        **client_kwargs: Any,
    ) -> None:
        """``client_kwargs`` go to ``ComputeManagementClient`` (e.g. ``transport``,
        ``base_url``). Without ``credential``, azure-identity's
        ``DefaultAzureCredential`` (environment, managed identity, CLI login)."""
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.location = location
        self.storage_resource_group = storage_resource_group or resource_group
        self.os_type = os_type
        self.hyper_v_generation = hyper_v_generation
        self.disk_sku = disk_sku
        self.client = ComputeManagementClient(credential, subscription_id, **client_kwargs)

    @property
    def where(self) -> str:
        return f"resource group {self.resource_group!r} ({self.location})"

    # -- CloudCompute -----------------------------------------------------------------
    def create_from_disks(
        self, name: str, disk_urls: Sequence[str], size: str, network: str
    ) -> CloudVm:
        if not disk_urls:
            raise ValueError("a VM needs at least one disk (the OS disk)")
        if self._find(name) is not None:
            raise CloudVmExists(name=name, where=self.where)
        disk_ids = [self._import_disk(name, i, url) for i, url in enumerate(disk_urls)]
        vm = VirtualMachine(
            location=self.location,
            tags={
                **{f"vmdr_disk{i}": url for i, url in enumerate(disk_urls)},
                "vmdr_network": network,
            },
            properties=VirtualMachineProperties(
                hardware_profile=HardwareProfile(vm_size=size),
                storage_profile=StorageProfile(
                    os_disk=OSDisk(
                        create_option="Attach",
                        os_type=self.os_type,
                        managed_disk=ManagedDiskParameters(id=disk_ids[0]),
                    ),
                    data_disks=[
                        DataDisk(
                            lun=lun,
                            create_option="Attach",
                            managed_disk=ManagedDiskParameters(id=disk_id),
                        )
                        for lun, disk_id in enumerate(disk_ids[1:])
                    ],
                ),
                network_profile=_network_profile(name, network),
            ),
        )
        created = self._call(
            "create",
            name,
            lambda: self.client.virtual_machines.begin_create_or_update(
                self.resource_group, name, vm
            ).result(),
        )
        log.info("created cloud vm=%s disks=%d size=%s", name, len(disk_ids), size)
        # Azure boots a VM it creates (there is no "create stopped"); the
        # failover's start step is then a no-op.
        return self._to_cloud_vm(created, STARTING)

    def start(self, name: str) -> CloudVm:
        self._call(
            "start",
            name,
            lambda: self.client.virtual_machines.begin_start(self.resource_group, name).result(),
        )
        return self.status(name)

    def stop(self, name: str) -> CloudVm:
        self._call(
            "stop",
            name,
            lambda: self.client.virtual_machines.begin_deallocate(
                self.resource_group, name
            ).result(),
        )
        return self.status(name)

    def delete(self, name: str) -> None:
        vm = self._find(name)
        if vm is None:
            return
        disks = _attached_disk_ids(vm)
        self._call(
            "delete",
            name,
            lambda: self.client.virtual_machines.begin_delete(self.resource_group, name).result(),
        )
        for disk_id in disks:
            disk_name = disk_id.rsplit("/", 1)[-1]
            if disk_name.startswith(f"{name}-disk"):  # only the disks create_from_disks made
                self._delete_disk(name, disk_name)

    def status(self, name: str) -> CloudVm:
        vm = self._find(name, expand="instanceView")
        if vm is None:
            raise CloudVmNotFound(name=name, where=self.where)
        return self._to_cloud_vm(vm, power_state(vm))

    def written_extents(
        self, name: str, disk_index: int, url: str, size: int
    ) -> list[tuple[int, int]] | None:
        # The VM writes the managed disk imported from ``url``, so neither the
        # replica blob's ranges nor a resync against it would be the truth:
        # refused with a code rather than a failback of stale data.
        raise CloudWritesUnknown(name=name, disk=f"disk {disk_index}", where=self.where)

    # -- helpers ------------------------------------------------------------------------
    def _delete_disk(self, vm_name: str, disk_name: str) -> None:
        try:
            self.client.disks.begin_delete(self.resource_group, disk_name).result()
        except ResourceNotFoundError:
            pass  # deleted already: a re-run of an interrupted delete
        except HttpResponseError as exc:
            detail = f"disk {disk_name}: {error_text(exc)}"
            raise CloudComputeFailed(action="delete", name=vm_name, detail=detail) from exc

    def _import_disk(self, vm_name: str, index: int, url: str) -> str:
        disk_name = f"{vm_name}-disk{index}"
        disk = Disk(
            location=self.location,
            sku=DiskSku(name=self.disk_sku),
            tags={"vmdr_source": url},
            properties=DiskProperties(
                os_type=self.os_type if index == 0 else None,
                hyper_v_generation=self.hyper_v_generation if index == 0 else None,
                creation_data=CreationData(
                    create_option="Import",
                    source_uri=self._blob_https_url(url),
                    storage_account_id=self._storage_account_id(url),
                ),
            ),
        )
        created = self._call(
            "import disk for",
            vm_name,
            lambda: self.client.disks.begin_create_or_update(
                self.resource_group, disk_name, disk
            ).result(),
        )
        return str(created.id)

    def _blob_https_url(self, url: str) -> str:
        parsed = parse_url(url)
        endpoint = lookup(parsed.account).endpoint.rstrip("/")
        return f"{endpoint}/{parsed.container}/{parsed.blob}"

    def _storage_account_id(self, url: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.storage_resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{parse_url(url).account}"
        )

    def _find(self, name: str, expand: str | None = None) -> VirtualMachine | None:
        try:
            return self.client.virtual_machines.get(self.resource_group, name, expand=expand)
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            raise CloudComputeFailed(action="look-up", name=name, detail=error_text(exc)) from exc

    def _call(self, action: str, name: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ResourceNotFoundError as exc:
            raise CloudVmNotFound(name=name, where=self.where) from exc
        except HttpResponseError as exc:
            raise CloudComputeFailed(action=action, name=name, detail=error_text(exc)) from exc

    def _to_cloud_vm(self, vm: VirtualMachine, state: str) -> CloudVm:
        tags = dict(vm.tags or {})
        disks = tuple(tags[k] for k in sorted(t for t in tags if t.startswith("vmdr_disk")))
        props = vm.properties
        size = props.hardware_profile.vm_size if props and props.hardware_profile else ""
        return CloudVm(
            name=str(vm.name),
            disks=disks,
            size=str(size or ""),
            network=tags.get("vmdr_network", ""),
            state=state,
            details={"id": vm.id, "managed_disks": _attached_disk_ids(vm)},
        )


def _network_profile(name: str, subnet_id: str) -> NetworkProfile:
    return NetworkProfile(
        network_api_version=NETWORK_API_VERSION,
        network_interface_configurations=[
            VirtualMachineNetworkInterfaceConfiguration(
                name=f"{name}-nic",
                properties=VirtualMachineNetworkInterfaceConfigurationProperties(
                    primary=True,
                    delete_option="Delete",
                    ip_configurations=[
                        VirtualMachineNetworkInterfaceIPConfiguration(
                            name="ipconfig1",
                            properties=VirtualMachineNetworkInterfaceIPConfigurationProperties(
                                subnet=SubResource(id=subnet_id), primary=True
                            ),
                        )
                    ],
                ),
            )
        ],
    )


def _attached_disk_ids(vm: VirtualMachine) -> list[str]:
    profile = vm.properties.storage_profile if vm.properties else None
    if profile is None:
        return []
    out = []
    if profile.os_disk and profile.os_disk.managed_disk and profile.os_disk.managed_disk.id:
        out.append(profile.os_disk.managed_disk.id)
    for disk in profile.data_disks or []:
        if disk.managed_disk and disk.managed_disk.id:
            out.append(disk.managed_disk.id)
    return out
