"""Fixtures for the providers' tests: fresh blob URLs in the lab's Azurite
(HTTPS, the lab's own key), deleted afterwards; VMs made in the lab's vCenter
simulator, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.azure import fencing, pageblob
from vmdr.providers.vsphere.control import NewDisk, create_vm, delete_vm
from vmdr.providers.vsphere.session import session


@pytest.fixture
def blob_url(account: str) -> Iterator[Callable[[], str]]:
    """Makes unique pageblob:// URLs; the blobs are deleted (leases broken) after
    the test, so Azurite's folder does not grow with every run."""
    made: list[str] = []

    def make() -> str:
        url = f"pageblob://{account}/tests/{uuid.uuid4().hex}"
        made.append(url)
        return url

    yield make
    for url in made:
        if pageblob.exists(url):
            fencing.break_(url)
            pageblob.delete(url)


@pytest.fixture
def vms(lab: Lab) -> Any:
    """Creates VMs in the lab's vCenter; deletes them after the test."""
    made: list[Any] = []
    with session(vcenter_endpoint(lab.directory)) as si:

        def make(name: str, disks: list[NewDisk], enable_uuid: bool = True) -> Any:
            vm = create_vm(si, name, "esx-01", "vmfs-01", disks, enable_uuid=enable_uuid)
            made.append(vm)
            return vm

        yield si, make
        for vm in reversed(made):
            delete_vm(si, vm)
