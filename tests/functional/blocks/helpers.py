"""Helpers for block-engine tests on real files.

Checks use plain file reads and hashlib, never the engine's own hashes, so a
bug in the engine cannot hide itself.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable
from pathlib import Path

KiB = 1 << 10
MiB = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def same_bytes(a: Path, b: Path) -> bool:
    return os.path.getsize(a) == os.path.getsize(b) and sha256_of(a) == sha256_of(b)


def make_file(path: Path, size: int, writes: Iterable[tuple[int, bytes]] = ()) -> Path:
    """A sparse file of ``size`` bytes with ``writes`` applied."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return path


def random_image(
    path: Path, size: int, *, seed: int, data_fraction: float = 0.6, run: int = 256 * KiB
) -> Path:
    """A sparse image: runs of random bytes, zero-filled data and holes."""
    rnd = random.Random(seed)
    writes: list[tuple[int, bytes]] = []
    for offset in range(0, size, run):
        length = min(run, size - offset)
        roll = rnd.random()
        if roll < data_fraction:
            writes.append((offset, rnd.randbytes(length)))
        elif roll < data_fraction + 0.05:
            writes.append((offset, bytes(length)))  # allocated zeros: data that reads as zero
    return make_file(path, size, writes)


def change_blocks(path: Path, offsets: list[int], length: int, *, seed: int) -> None:
    rnd = random.Random(seed)
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            f.write(rnd.randbytes(length))


def allocated(path: Path) -> int:
    """Bytes the file system allocated for the file."""
    return os.stat(path).st_blocks * 512


def write_descriptor(folder: Path, name: str, size: int, extent: str | None = None) -> Path:
    """A monolithicFlat descriptor ``name`` for the flat file ``extent``."""
    extent = extent or name.replace(".vmdk", "-flat.vmdk")
    path = folder / name
    path.write_text(
        "# Disk DescriptorFile\n"
        "version=1\n"
        'encoding="UTF-8"\n'
        "CID=fffffffe\n"
        "parentCID=ffffffff\n"
        'createType="monolithicFlat"\n'
        "\n"
        "# Extent description\n"
        f'RW {size // 512} FLAT "{extent}" 0\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        'ddb.adapterType = "lsilogic"\n'
        'ddb.virtualHWVersion = "14"\n'
    )
    return path
