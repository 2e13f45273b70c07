"""The one shape of every id vmdr takes from a request and may use in a file
name (disks, replications, change sets): never a path, never hidden."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ID_PATTERN", "ReplicationId", "is_id"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)


def is_id(value: str) -> bool:
    return bool(_ID.match(value))


_REPLICATION = re.compile(r"^fb-(?P<item>[A-Za-z0-9][A-Za-z0-9._-]*)-d(?P<unit>[0-9]{1,4})$")


@dataclass(frozen=True)
class ReplicationId:
    """A failback replication's identity: one disk (``unit``) of one protected
    item. The process server and master target know it by its text,
    ``fb-<item>-d<unit>``; the configuration server reads reports by it."""

    item: str
    unit: int

    def __str__(self) -> str:
        return f"fb-{self.item}-d{self.unit}"

    @classmethod
    def parse(cls, text: str) -> ReplicationId | None:
        """The identity named by ``text``, or None for any other replication."""
        match = _REPLICATION.match(text)
        return cls(match["item"], int(match["unit"])) if match else None
