"""The privilege check's logic (the simulator has one all-powerful user, so a
restricted account can only be modelled here)."""

from __future__ import annotations

from vmdr.providers.vsphere.privileges import REQUIRED, missing


def test_everything_granted_means_nothing_missing() -> None:
    assert missing(set(REQUIRED) | {"Global.Licenses"}) == []


def test_missing_ones_are_named_with_their_purpose() -> None:
    granted = set(REQUIRED) - {"VirtualMachine.State.RemoveSnapshot", "Datastore.Browse"}
    assert missing(granted) == [
        "Datastore.Browse (find the VMDKs of a VM)",
        "VirtualMachine.State.RemoveSnapshot (remove snapshots before reprotect)",
    ]


def test_read_only_account() -> None:
    assert len(missing({"System.View", "System.Read"})) == len(REQUIRED) - 2
