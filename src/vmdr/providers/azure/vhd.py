"""Fixed VHD: the disk format Azure imports (a raw disk plus a 512-byte footer).

Azure creates a managed disk from a page blob that holds a *fixed* VHD: the
disk's bytes, then one footer. The virtual size must be a whole number of
MiB, and Azure takes it from the footer's "current size" field (not from the
CHS geometry, which cannot express most sizes).

Footer layout (VHD specification, "Hard Disk Footer Format"; all integers
big-endian; 512 bytes, at offset ``virtual_size``)::

    off len field
      0   8 cookie               b"conectix"
      8   4 features             0x00000002 (reserved bit, always set)
     12   4 format version       0x00010000
     16   8 data offset          0xFFFFFFFFFFFFFFFF (fixed disks have no header)
     24   4 time stamp           seconds since 2000-01-01 00:00:00 UTC
     28   4 creator application  b"win " (see below)
     32   4 creator version      0x000A0000
     36   4 creator host OS      b"Wi2k"
     40   8 original size        virtual size in bytes
     48   8 current size         virtual size in bytes
     56   4 disk geometry        cylinders(2) heads(1) sectors per track(1)
     60   4 disk type            2 = fixed (3 dynamic, 4 differencing)
     64   4 checksum             one's complement of the byte sum of the footer
                                 with this field taken as zero
     68  16 unique id            random UUID
     84   1 saved state          0
     85 427 reserved             zeros

Creator application ``"win "`` (Hyper-V's) is chosen for what readers do with
it, not to pose as Hyper-V: qemu takes the size from the CHS geometry for
unknown creators and from "current size" only for ``"win "``, ``"qem2"``,
``"d2v "`` and a few others (block/vpc.c), and Azure's own tools write
Hyper-V footers. With it ``qemu-img info -f vpc`` shows the exact size.

``export_vhd`` / ``import_vhd`` copy with the block engine (holes stay holes,
so a 1 GiB disk with 10 MiB of data costs 10 MiB), between any disk URLs:
a raw file, a flat VMDK (its descriptor or ``-flat.vmdk``), a page blob.
``append_footer`` turns a disk in place into a VHD (e.g. a replicated page
blob just before Azure imports it) and ``virtual_disk`` gives the disk
inside a VHD without its footer.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from vmdr.blocks.backend import Backend, ReadableBuffer, WritableBuffer
from vmdr.blocks.copy import FullCopy
from vmdr.blocks.errors import ReadOnlyTarget
from vmdr.blocks.extent import Extent
from vmdr.blocks.operation import ProgressCallback
from vmdr.blocks.urls import open_backend
from vmdr.providers.azure.errors import VhdInvalid, VhdSizeNotAccepted

__all__ = [
    "FOOTER_SIZE",
    "MiB",
    "VhdFooter",
    "append_footer",
    "export_vhd",
    "geometry",
    "import_vhd",
    "make_footer",
    "parse_footer",
    "read_footer",
    "virtual_disk",
]

FOOTER_SIZE = 512
MiB = 1 << 20
COOKIE = b"conectix"
FIXED = 2
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
CREATOR_APP = b"win "
CREATOR_VERSION = 0x000A0000
CREATOR_OS = b"Wi2k"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Everything up to the unique id; the checksum is at offset 64.
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB")


@dataclass(frozen=True)
class VhdFooter:
    current_size: int
    original_size: int
    disk_type: int
    geometry: tuple[int, int, int]
    timestamp: int
    creator_app: bytes
    unique_id: uuid.UUID
    checksum: int

    def to_dict(self) -> dict[str, object]:
        return {
            "current_size": self.current_size,
            "original_size": self.original_size,
            "disk_type": self.disk_type,
            "geometry": list(self.geometry),
            "creator_app": self.creator_app.decode("latin-1"),
            "unique_id": str(self.unique_id),
        }


def geometry(size: int) -> tuple[int, int, int]:
    """CHS of a disk of ``size`` bytes, by the VHD specification's algorithm
    (it only fills the footer's geometry field; the size is "current size")."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cyl_heads = total // sectors
    else:
        sectors = 17
        cyl_heads = total // sectors
        heads = max((cyl_heads + 1023) // 1024, 4)
        if cyl_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cyl_heads = total // sectors
        if cyl_heads >= heads * 1024:
            sectors, heads = 63, 16
            cyl_heads = total // sectors
    return cyl_heads // heads, heads, sectors


def _checksum(footer: bytes | bytearray) -> int:
    return ~(sum(footer[:64]) + sum(footer[68:])) & 0xFFFFFFFF


def make_footer(
    size: int, *, unique_id: uuid.UUID | None = None, timestamp: datetime | None = None
) -> bytes:
    """The 512-byte fixed-VHD footer of a disk of ``size`` bytes."""
    if size <= 0 or size % 512:
        raise ValueError(f"a VHD's size must be a positive multiple of 512, not {size}")
    when = timestamp or datetime.now(UTC)
    cyl, heads, sectors = geometry(size)
    body = _FOOTER.pack(
        COOKIE, 2, 0x00010000, NO_DATA_OFFSET,
        int((when - _EPOCH).total_seconds()) & 0xFFFFFFFF,
        CREATOR_APP, CREATOR_VERSION, CREATOR_OS,
        size, size, cyl, heads, sectors, FIXED,
        0,  # checksum, filled below
        (unique_id or uuid.uuid4()).bytes, 0,
    )  # fmt: skip
    footer = bytearray(body.ljust(FOOTER_SIZE, b"\0"))
    struct.pack_into(">I", footer, 64, _checksum(footer))
    return bytes(footer)


def parse_footer(data: bytes, *, where: str = "footer") -> VhdFooter:
    """Parse and check a fixed-VHD footer (cookie, checksum, disk type)."""
    if len(data) != FOOTER_SIZE or data[:8] != COOKIE:
        raise VhdInvalid(path=where, detail="no 'conectix' footer in its last 512 bytes")
    fields = _FOOTER.unpack_from(data)
    (_cookie, _feat, _ver, data_offset, stamp, app, _cver, _os,
     original, current, cyl, heads, sectors, disk_type, checksum, uid, _saved) = fields  # fmt: skip
    if checksum != _checksum(data):
        detail = f"footer checksum {checksum:#010x}, computed {_checksum(data):#010x}"
        raise VhdInvalid(path=where, detail=detail)
    if disk_type != FIXED or data_offset != NO_DATA_OFFSET:
        kind = {3: "dynamic", 4: "differencing"}.get(disk_type, f"type {disk_type}")
        detail = f"it is a {kind} VHD; Azure and vmdr take fixed VHDs only"
        raise VhdInvalid(path=where, detail=detail)
    return VhdFooter(
        current, original, disk_type, (cyl, heads, sectors), stamp, app, uuid.UUID(bytes=uid),
        checksum,
    )  # fmt: skip


def read_footer(disk: Backend) -> VhdFooter:
    """The footer of the VHD held by ``disk``, checked against the disk's size."""
    size = disk.size()
    if size < FOOTER_SIZE + 512:
        raise VhdInvalid(path=disk.url, detail=f"{size} bytes is too small for a VHD")
    buf = bytearray(FOOTER_SIZE)
    disk.readinto(size - FOOTER_SIZE, buf)
    footer = parse_footer(bytes(buf), where=disk.url)
    if footer.current_size != size - FOOTER_SIZE:
        detail = (
            f"the footer says {footer.current_size} bytes, the disk holds "
            f"{size - FOOTER_SIZE} before it"
        )
        raise VhdInvalid(path=disk.url, detail=detail)
    return footer


def append_footer(disk: Backend, *, pad: bool = False) -> VhdFooter:
    """Make ``disk`` (raw, opened rw) a fixed VHD in place: grow it by 512 bytes
    and write the footer there. ``pad`` first grows it to a whole MiB."""
    size = disk.size()
    if size % MiB:
        if not pad:
            raise VhdSizeNotAccepted(url=disk.url, size=size)
        size = -(-size // MiB) * MiB
    disk.resize(size + FOOTER_SIZE)
    footer = make_footer(size)
    disk.write(size, footer)
    disk.flush()
    return parse_footer(footer, where=disk.url)


class _Window(Backend):
    """The first ``length`` bytes of another disk, read-only."""

    def __init__(self, inner: Backend, length: int) -> None:
        super().__init__(inner.url, "r")
        self.inner = inner
        self.length = length
        self.block_alignment = inner.block_alignment
        self.shareable = False  # reopening the URL would give the whole file
        self.preferred_read: int = getattr(inner, "preferred_read", 256 << 10)

    def size(self) -> int:
        return self.length

    def readinto(self, offset: int, buf: WritableBuffer) -> int:
        self._check_range("read", offset, len(memoryview(buf).cast("B")), self.length)
        return self.inner.readinto(offset, buf)

    def write(self, offset: int, buf: ReadableBuffer) -> int:
        raise ReadOnlyTarget(url=self.url, detail="the disk inside a VHD is opened read-only")

    def zero(self, offset: int, length: int) -> None:
        raise ReadOnlyTarget(url=self.url, detail="the disk inside a VHD is opened read-only")

    def flush(self) -> None:
        pass

    def extents(self, context: str = "zero") -> Iterator[Extent]:
        for ext in self.inner.extents(context):
            if ext.start >= self.length:
                break
            yield Extent(ext.start, min(ext.end, self.length) - ext.start, ext.zero)

    def close(self) -> None:
        self.closed = True  # the inner disk belongs to the caller


def virtual_disk(vhd: Backend) -> Backend:
    """The disk inside a fixed VHD (checked), without the footer."""
    return _Window(vhd, read_footer(vhd).current_size)


def export_vhd(
    src_url: str,
    dst_url: str,
    *,
    pad: bool = False,
    progress: ProgressCallback | None = None,
) -> VhdFooter:
    """Write the disk at ``src_url`` as a fixed VHD at ``dst_url`` (made or
    overwritten; a file or a page blob). ``pad`` accepts a size that is not a
    whole MiB by adding zeros up to the next one."""
    with open_backend(src_url) as src:
        size = src.size()
        if size % MiB and not pad:
            raise VhdSizeNotAccepted(url=src_url, size=size)
        with open_backend(dst_url, "rw", create=True) as dst:
            if dst.size():
                dst.resize(0)  # a stale target's bytes must not survive as data
            FullCopy(src, dst, progress=progress).run()
            footer = append_footer(dst, pad=pad)
    return footer


def import_vhd(
    src_url: str, dst_url: str, *, progress: ProgressCallback | None = None
) -> VhdFooter:
    """Write the disk inside the fixed VHD at ``src_url`` to ``dst_url`` (a
    raw file, an existing flat VMDK of that size, a page blob)."""
    with open_backend(src_url) as src:
        footer = read_footer(src)
        inner = _Window(src, footer.current_size)
        with open_backend(dst_url, "rw", create=True) as dst:
            if dst.size() > inner.size():
                dst.resize(inner.size())
            FullCopy(inner, dst, progress=progress).run()
            dst.flush()
    return footer
