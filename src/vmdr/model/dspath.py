"""vSphere's name for a file on a datastore, ``[vmfs-01] web-01/web-01_1.vmdk``,
as one value: parsed once, printed the same way everywhere, and the two
names that follow from it — the flat extent beside a descriptor, and the
disk files vSphere gives a VM's disks (``NAME/NAME.vmdk``, ``NAME/NAME_1.vmdk``…).

Only the notation is checked here; whether a datastore may be written, and
what the path resolves to, is the master target's business (``roles/datastores``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmdr.model.errors import UsageError

__all__ = ["DatastoreFile"]

_NOTATION = re.compile(r"^\[(?P<ds>[^\]\[]+)\]\s*(?P<path>\S.*)$")


@dataclass(frozen=True)
class DatastoreFile:
    datastore: str
    path: str  # inside the datastore, as vSphere names it

    @classmethod
    def parse(cls, text: str) -> DatastoreFile:
        """``[datastore] folder/file.vmdk``; anything else is refused."""
        match = _NOTATION.match(text.strip())
        if match is None:
            raise UsageError(detail=f"{text!r} is not a datastore path like '[ds] vm/vm.vmdk'")
        return cls(match["ds"].strip(), match["path"].strip())

    @classmethod
    def of_disk(cls, datastore: str, vm: str, index: int) -> DatastoreFile:
        """The file vSphere gives disk ``index`` (0, 1, …) of a VM it creates."""
        return cls(datastore, f"{vm}/{vm}{'' if index == 0 else f'_{index}'}.vmdk")

    @property
    def flat(self) -> str:
        """The path of the flat extent holding a descriptor's bytes."""
        return self.path.removesuffix(".vmdk").removesuffix("-flat") + "-flat.vmdk"

    def __str__(self) -> str:
        return f"[{self.datastore}] {self.path}"
