"""zstd for DataRun frames: when to compress, and decompressing a hostile payload safely.

One ``Compressor`` and one ``Decompressor`` per stream: each holds a zstd
context, and zstd contexts are not thread-safe (a stream is encoded or
decoded in one thread at a time).

Measured on this machine (2 cores shared with other work, Python 3.11,
zstandard 0.25) with ``.venv/bin/python bench/frames.py --mib 64 --policies``.
zstd alone, per frame: compress / decompress MB/s, compressed/raw:

    data     run      level 3          level 1          level -1         level -3
    random   1 MiB    4417/22624 1.00  4294/23008 1.00  4688/22625 1.00  4667/23514 1.00
    typical  64 KiB    663/2641 0.606   824/2647 0.614   954/3031 0.629  1019/3253 0.642
    typical  1 MiB     561/3070 0.565   860/3314 0.587   997/3653 0.601  1018/3742 0.611
    typical  4 MiB     538/3041 0.520   885/3268 0.580   995/3615 0.593  1052/3764 0.605

("typical" is files from /usr: text, binaries, some already compressed.)
Without compression the codec encodes at 5-12 GB/s (xxh3 and a join), so
zstd is the whole cost. Level 1 is the default: level 3 saves 4-10 % more
bytes for 50 % more CPU, level -1 saves 15 % CPU for 2.5 % more bytes, and
even level 1 is 6-7x faster than a 1 Gbit/s link. On the WAN or VPN that
a replica crosses, bytes matter more than CPU.

The policy. Frames under ``MIN_SIZE`` are sent raw. A compressed frame is
kept only if it is below ``WORTH`` (97 %) of the raw size, so an
incompressible frame costs the receiver nothing. Trying zstd on random data
(encrypted or already-compressed disks) costs ~0.17 ms per MB, which halves
or worse the encode speed. So after ``PROBE_AFTER`` frames in a row did not
shrink, each frame is first *probed*: 4 slices of 1 KiB spread over it are
compressed, and the whole frame is tried only if they shrink below
``SAMPLE_WORTH``. A frame that shrinks ends the streak. Compared with
skipping zstd for M frames after N misses (compression work in ms/MB, then
wire/raw; "mixed" is 2-16 MiB regions, each random or typical):

    policy                    random 64K    random 1M     typical 64K   mixed 64K     mixed 1M
    zstd on every frame       0.177 1.000   0.166 1.000   1.310 0.614   0.798 0.839   0.961 0.816
    skip 32 after 4 misses    0.020 1.000   0.023 1.000   0.905 0.708   0.446 0.915   0.571 0.910
    skip 8 after 2 misses     0.037 1.000   0.041 1.000   0.909 0.661   0.435 0.889   0.317 0.942
    probe after 2 (chosen)    0.086 1.000   0.012 1.000   1.242 0.618   0.757 0.844   0.817 0.826

Blind skipping sends 8-15 % more bytes on disks where compressible and
incompressible regions alternate; the probe stays within 1.2 % of
compressing everything, and random data costs little to nothing. End to end
(encode MB/s, off / every frame / adaptive): random 64 KiB runs
4840 / 2515 / 3765, random 1 MiB 10468 / 2786 / 8619; typical 1 MiB
11563 / 729 / 697 at wire/raw 1.000 / 0.587 / 0.587.
"""

from __future__ import annotations

from dataclasses import dataclass

import zstandard

from vmdr.blocks.backend import ReadableBuffer
from vmdr.transport.errors import FrameCorrupt

__all__ = [
    "MIN_SIZE",
    "PROBE_AFTER",
    "SAMPLE_WORTH",
    "WORTH",
    "CompressionStats",
    "Compressor",
    "Decompressor",
]

MIN_SIZE = 4096
WORTH = 0.97
PROBE_AFTER = 2
SAMPLE_WORTH = 0.9
_SLICES, _SLICE = 4, 1024


@dataclass(slots=True)
class CompressionStats:
    """Counts of DataRun frames: compressed and kept, tried but sent raw, and
    sent raw because the probe said they would not shrink."""

    kept: int = 0
    raw: int = 0
    probed_out: int = 0


class Compressor:
    """zstd with the adaptive policy above; one per stream."""

    def __init__(self, level: int = 1, probe_after: int = PROBE_AFTER) -> None:
        self.level = level
        self.probe_after = probe_after
        self._zstd = zstandard.ZstdCompressor(level=level)
        self._misses = 0
        self.stats = CompressionStats()

    def compress(self, head: bytes, data: memoryview) -> bytes | None:
        """``head + data`` as one zstd frame (recording its content size), or
        None when it should go raw."""
        size = len(head) + len(data)
        if len(data) < MIN_SIZE:
            return None
        if self._misses >= self.probe_after and not self._promising(data):
            self.stats.probed_out += 1
            return None
        cobj = self._zstd.compressobj(size=size)
        packed = cobj.compress(head) + cobj.compress(data) + cobj.flush()
        if len(packed) < WORTH * size:
            self._misses = 0
            self.stats.kept += 1
            return packed
        self._misses += 1
        self.stats.raw += 1
        return None

    def _promising(self, data: memoryview) -> bool:
        step = len(data) // _SLICES
        mid = step // 2 - _SLICE // 2
        sample = b"".join(data[i * step + mid : i * step + mid + _SLICE] for i in range(_SLICES))
        return len(self._zstd.compress(sample)) < SAMPLE_WORTH * len(sample)


class Decompressor:
    """Decompresses one frame's payload into exactly ``raw`` bytes; one per stream.

    A zstd frame header states its own content size and zstandard allocates
    that much before it looks at the data, so a payload claiming a terabyte
    would make us try to allocate one: the claim must equal the frame
    header's RAW_LEN (already bounded), and nothing may follow the zstd frame.
    """

    def __init__(self) -> None:
        self._zstd = zstandard.ZstdDecompressor()

    def decompress(self, payload: ReadableBuffer, raw: int, offset: int) -> bytes:
        try:
            claimed = zstandard.frame_content_size(payload)
            if claimed != raw:
                raise FrameCorrupt(
                    what=f"zstd content size ({claimed}, RAW_LEN says {raw})", offset=offset
                )
            return self._zstd.decompress(payload, max_output_size=raw, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise FrameCorrupt(what=f"compressed payload ({exc})", offset=offset) from exc
