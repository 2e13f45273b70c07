"""Checks that do not use vmdr's own code, so they can judge it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MiB = 1 << 20


def data_segments(path: Path) -> list[tuple[int, int]]:
    """Where the file system holds data (SEEK_DATA/SEEK_HOLE): an independent
    view of a sparse file, cheaper than reading 1 GiB of zeros."""
    out = []
    with open(path, "rb") as f:
        end, pos = os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                start = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            pos = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            out.append((start, pos))
    return out


def same_sparse_files(a: Path, b: Path) -> bool:
    """Equal sizes, and equal bytes wherever either file holds data (the rest
    is holes in both, which read as zeros)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for start, end in data_segments(a) + data_segments(b):
            for pos in range(start, end, 16 * MiB):
                n = min(16 * MiB, end - pos)
                if os.pread(fa.fileno(), n, pos) != os.pread(fb.fileno(), n, pos):
                    return False
    return True


def vmfs_folder(lab_inventory: dict[str, Any]) -> Path:
    return Path(next(d["path"] for d in lab_inventory["topology"]["datastores"]
                     if d["name"] == "vmfs-01"))  # fmt: skip
