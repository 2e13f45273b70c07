"""An in-memory page blob with snapshots, whose page-range diff is honest or
lies the ways a service can (Azurite's: current ranges, no cleared ones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError

PAGE = 512


@dataclass(frozen=True)
class Range:
    start: int
    end: int  # inclusive, like the service
    cleared: bool = False


def _ranges(pages: set[int], cleared: bool = False) -> list[Range]:
    out: list[Range] = []
    for page in sorted(pages):
        start = page * PAGE
        if out and out[-1].end + 1 == start:
            out[-1] = Range(out[-1].start, start + PAGE - 1, cleared)
        else:
            out.append(Range(start, start + PAGE - 1, cleared))
    return out


class FakePageBlob:
    """``mode``: "honest", "azurite" (ignores previous_snapshot), "no-cleared"
    (drops cleared ranges), "coarse" (one changed range over everything that
    changed: a superset, still safe), "fail-after-snapshot" (errors)."""

    def __init__(self, mode: str = "honest") -> None:
        self.mode = mode
        self.valid: set[int] = set()
        self.snapshots: dict[str, set[int]] = {}
        self.written_since: dict[str, set[int]] = {}
        self.cleared_since: dict[str, set[int]] = {}
        self.deleted = False
        self.calls: list[str] = []

    def create_page_blob(self, size: int, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("create")
        self.size = size
        return {}

    def upload_page(self, page: bytes, offset: int, length: int, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("upload")
        touched = set(range(offset // PAGE, (offset + length) // PAGE))
        self.valid |= touched
        for pages in self.written_since.values():
            pages |= touched
        return {}

    def clear_page(self, offset: int, length: int, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("clear")
        touched = set(range(offset // PAGE, (offset + length) // PAGE))
        for snap, pages in self.cleared_since.items():
            pages |= touched & (self.valid | self.snapshots[snap])
            self.written_since[snap] -= touched
        self.valid -= touched
        return {}

    def create_snapshot(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("snapshot")
        if self.mode == "fail-after-snapshot":
            raise HttpResponseError(message="the service fell over")
        name = f"2026-01-01T00:00:0{len(self.snapshots)}.0000000Z"
        self.snapshots[name] = set(self.valid)
        self.written_since[name] = set()
        self.cleared_since[name] = set()
        return {"snapshot": name}

    def list_page_ranges(self, previous_snapshot: str | None = None, **kwargs: Any) -> list[Range]:
        self.calls.append("diff" if previous_snapshot else "ranges")
        if previous_snapshot is None or self.mode == "azurite":
            return _ranges(self.valid)
        changed = _ranges(self.written_since[previous_snapshot])
        cleared = _ranges(self.cleared_since[previous_snapshot], cleared=True)
        if self.mode == "no-cleared":
            return changed
        if self.mode == "coarse":
            everything = sorted(changed + cleared, key=lambda r: r.start)
            return [Range(everything[0].start, everything[-1].end)] if everything else []
        return sorted(changed + cleared, key=lambda r: r.start)

    def delete_blob(self, delete_snapshots: str | None = None, **kwargs: Any) -> None:
        self.calls.append("delete")
        self.deleted = True


class FakeContainer:
    url = "https://fake.blob.example/probe"

    def __init__(self, mode: str = "honest") -> None:
        self.mode = mode
        self.blobs: list[FakePageBlob] = []

    def get_blob_client(self, blob: str) -> FakePageBlob:
        made = FakePageBlob(self.mode)
        self.blobs.append(made)
        return made
