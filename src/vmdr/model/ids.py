"""The one shape of every id vmdr takes from a request and may use in a file
name (disks, replications, change sets): never a path, never hidden."""

from __future__ import annotations

import re

__all__ = ["ID_PATTERN", "is_id"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)


def is_id(value: str) -> bool:
    return bool(_ID.match(value))
