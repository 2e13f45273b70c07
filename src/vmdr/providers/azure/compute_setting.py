"""Which cloud compute service runs: the data plane's ``cloud_compute``
setting, typed, and the ``CloudCompute`` it opens.

    {"driver": "azure", "subscription_id": "…", "resource_group": "dr",
     "location": "westeurope"}                         azure_compute.AzureCompute
    {"driver": "lab", "folder": "/path"}               lab_compute.LabCompute

No Azure compute emulator exists (docs/azure.md), so the lab supplies its
own implementation of the same interface; the setting picks one, and
nothing that uses a ``CloudCompute`` knows which. A bare path (files written
before the setting had a driver) is the lab driver's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from vmdr.providers.azure.compute import CloudCompute

__all__ = ["AzureComputeSpec", "ComputeSetting", "LabComputeSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabComputeSpec(_Spec):
    """The lab's cloud: VM records and workloads in a folder."""

    driver: Literal["lab"]
    folder: Path

    def describe(self) -> dict[str, str]:
        return {"driver": self.driver, "where": f"the lab's cloud in {self.folder}"}

    def open(self) -> CloudCompute:
        from vmdr.providers.azure.lab_compute import LabCompute

        return LabCompute(self.folder)


class AzureComputeSpec(_Spec):
    """Azure: VMs in a resource group (credentials from azure-identity's
    DefaultAzureCredential: environment, managed identity, CLI login)."""

    driver: Literal["azure"]
    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    location: str = Field(min_length=1)
    storage_resource_group: str | None = None
    os_type: Literal["Linux", "Windows"] = "Linux"
    disk_sku: str = "Standard_LRS"

    def describe(self) -> dict[str, str]:
        where = f"resource group {self.resource_group!r} ({self.location})"
        return {"driver": self.driver, "where": where}

    def open(self) -> CloudCompute:
        from vmdr.providers.azure.azure_compute import AzureCompute

        return AzureCompute(self.subscription_id, self.resource_group, self.location,
                            storage_resource_group=self.storage_resource_group,
                            os_type=self.os_type, disk_sku=self.disk_sku)  # fmt: skip


def _bare_folder(value: Any) -> Any:
    return {"driver": "lab", "folder": value} if isinstance(value, str) else value


_ByDriver = Annotated[LabComputeSpec | AzureComputeSpec, Field(discriminator="driver")]
ComputeSetting = Annotated[_ByDriver, BeforeValidator(_bare_folder)]
