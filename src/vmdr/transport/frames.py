"""Frames: the wire format of a replication session (version 1).

A session body (and a change set kept in the process server's outbox) is a
sequence of frames. Each frame is a 28-byte header and a payload; all
integers little-endian::

    offset size  field
         0    2  MAGIC        b"VF"
         2    1  VERSION      1
         3    1  TYPE         see below
         4    1  FLAGS        bit 0: payload is zstd-compressed; other bits 0
         5    3  reserved     0
         8    4  PAYLOAD_LEN  bytes of payload on the wire, at most MAX_PAYLOAD
        12    4  RAW_LEN      bytes of payload after decompression, at most MAX_PAYLOAD
        16    8  CHECKSUM     xxh3-64 of the *uncompressed* payload
        24    4  HEADER_CRC   crc32 of bytes 0..23

    TYPE  payload (uncompressed)
       1  DiskInfo      SIZE(8) BLOCK_SIZE(4)
       2  BlockDigests  START_BLOCK(8) COUNT(8) BLOCK_SIZE(4) ZERO(ceil(COUNT/8)) DIGESTS(16*k)
       3  DataRun       OFFSET(8) DATA(rest)
       4  ZeroRun       OFFSET(8) LENGTH(8)
       5  Done          SIZE(8) ROOT(16 or 0)
      16  Control       a JSON object (UTF-8): session control, e.g. {"op": "begin", ...}
      17  End           empty: the sender finished the stream on purpose
      18  Hello         MAX_VERSION(1) CAPABILITIES (a JSON object, UTF-8), first frame only

Type numbers are stable; new types take new numbers. Only DataRun payloads
are compressed, as one zstd frame that records its content size (= RAW_LEN).

Checks, in order: MAGIC, then VERSION (a reader must not interpret the rest
of another version's header; a VERSION other than 1 is reported as
UnsupportedVersion in a stream's first frame or when the header CRC still
matches, else as a corrupt header), HEADER_CRC, the lengths against
MAX_PAYLOAD *before* the payload is buffered (a peer cannot make us allocate
more), FLAGS and reserved bits, then CHECKSUM. The header CRC catches a
corrupted length before we trust it; the checksum is end to end (computed
before compression, checked after decompression), so it also catches a
codec or buffer bug, not only the wire. TLS already protects against
tampering in flight; the checksum protects the bytes that were sent from
what happens around TLS. Longer DataRuns are split into several frames.

Hello carries what each side can do, e.g. ``{"compression": ["zstd"],
"max_frame": 8388608}``; ``negotiate`` turns two of them into what the
sender may use (compression only if both list zstd). The decoder keeps a
stream's Hello in ``FrameDecoder.hello`` instead of yielding it. Compression
policy and measurements: ``vmdr.transport.compression``.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import xxhash

from vmdr.blocks.backend import ReadableBuffer
from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done, Message, ZeroRun
from vmdr.transport.compression import Compressor, Decompressor
from vmdr.transport.errors import (
    FrameCorrupt,
    FrameTooLarge,
    ProtocolError,
    TruncatedStream,
    UnknownFrameType,
    UnsupportedVersion,
)

__all__ = [
    "MAX_PAYLOAD",
    "VERSION",
    "Agreement",
    "Control",
    "Encoder",
    "End",
    "FrameDecoder",
    "Hello",
    "Item",
    "aiter_messages",
    "iter_messages",
    "negotiate",
]

MAGIC = b"VF"
VERSION = 1
HEADER = struct.Struct("<2sBBB3xIIQ")
HEADER_SIZE = HEADER.size + 4
MAX_PAYLOAD = 8 << 20
MAX_DATA = MAX_PAYLOAD - 8
MIN_FRAME = 64 << 10  # the smallest max_frame a peer may ask for
FLAG_ZSTD = 0x01
T_CONTROL, T_END, T_HELLO = 16, 17, 18
_CRC = struct.Struct("<I")
_U64, _U64x2, _INFO, _DIGHDR = (
    struct.Struct("<Q"),
    struct.Struct("<QQ"),
    struct.Struct("<QI"),
    struct.Struct("<QQI"),
)
Pieces = list[bytes | memoryview]


@dataclass(frozen=True)
class Control:
    """Session control: a small JSON object with an ``op``."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def op(self) -> str:
        return str(self.data.get("op", ""))


@dataclass(frozen=True)
class End:
    """The sender ended the stream on purpose."""


Item = Message | Control | End


@dataclass(frozen=True)
class Hello:
    """What one side speaks: the highest wire version and its capabilities."""

    version: int = VERSION
    capabilities: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ours(cls, compress: bool = True, max_frame: int = MAX_PAYLOAD) -> Hello:
        return cls(VERSION, {"compression": ["zstd"] if compress else [], "max_frame": max_frame})


@dataclass(frozen=True)
class Agreement:
    """What a sender may use towards a peer."""

    version: int
    compress: bool
    max_frame: int


def negotiate(ours: Hello, theirs: Hello) -> Agreement:
    """The common ground of two Hellos; a peer that sent nonsense is refused."""
    version = min(ours.version, theirs.version)
    if version < 1:
        raise UnsupportedVersion(version=theirs.version, supported=VERSION)
    limits, zstd = [], []
    for hello in (ours, theirs):
        caps = hello.capabilities
        methods, limit = caps.get("compression", []), caps.get("max_frame", MAX_PAYLOAD)
        if not isinstance(methods, list) or type(limit) is not int or limit < MIN_FRAME:
            raise ProtocolError(detail=f"bad capabilities in Hello: {caps!r}")
        zstd.append("zstd" in methods)
        limits.append(limit)
    return Agreement(version, all(zstd), min(*limits, MAX_PAYLOAD))


class Encoder:
    """Turns messages into frames; one per stream (holds a zstd context).

    ``encode`` returns the header and payload pieces, so a DataRun's data is
    not copied unless compressed; join them for one write per frame."""

    def __init__(
        self, compress: bool = False, level: int = 1, max_frame: int = MAX_PAYLOAD
    ) -> None:
        if not MIN_FRAME <= max_frame <= MAX_PAYLOAD:
            raise ValueError(f"max_frame {max_frame} is outside [{MIN_FRAME}, {MAX_PAYLOAD}]")
        self.compress = compress
        self.compressor = Compressor(level) if compress else None
        self.max_data = max_frame - 8
        self.raw_bytes = 0
        self.wire_bytes = 0

    @classmethod
    def agreed(cls, agreement: Agreement, level: int = 1) -> Encoder:
        return cls(agreement.compress, level, agreement.max_frame)

    def encode(self, msg: Item | Hello) -> Pieces:
        """Header and payload pieces of ``msg`` (a long DataRun: several frames)."""
        if isinstance(msg, DataRun):
            data = memoryview(msg.data).cast("B")
            out: Pieces = []
            for pos in range(0, max(len(data), 1), self.max_data):
                out += self._data(msg.offset + pos, data[pos : pos + self.max_data])
            return out
        if isinstance(msg, BlockDigests):
            head = _DIGHDR.pack(msg.start_block, msg.count, msg.block_size)
            return self._frame(BlockDigests.TYPE, [head, msg.zero, msg.digests])
        if isinstance(msg, DiskInfo):
            return self._frame(DiskInfo.TYPE, [_INFO.pack(msg.size, msg.block_size)])
        if isinstance(msg, ZeroRun):
            return self._frame(ZeroRun.TYPE, [_U64x2.pack(msg.offset, msg.length)])
        if isinstance(msg, Done):
            return self._frame(Done.TYPE, [_U64.pack(msg.size), msg.root])
        if isinstance(msg, Control):
            return self._frame(T_CONTROL, [json.dumps(msg.data).encode()])
        if isinstance(msg, End):
            return self._frame(T_END, [])
        if isinstance(msg, Hello):
            caps = json.dumps(msg.capabilities).encode()
            return self._frame(T_HELLO, [bytes([msg.version]), caps])
        raise ProtocolError(detail=f"cannot encode {type(msg).__name__}")

    def _data(self, offset: int, data: memoryview) -> Pieces:
        head = _U64.pack(offset)
        if self.compressor is not None:
            packed = self.compressor.compress(head, data)
            if packed is not None:
                h = xxhash.xxh3_64(head)
                h.update(data)
                return self._header(DataRun.TYPE, FLAG_ZSTD, [packed], len(data) + 8, h.intdigest())
        return self._frame(DataRun.TYPE, [head, data])

    def _frame(self, ftype: int, parts: Pieces) -> Pieces:
        h = xxhash.xxh3_64()
        for part in parts:
            h.update(part)
        raw = sum(len(p) for p in parts)
        return self._header(ftype, 0, parts, raw, h.intdigest())

    def _header(self, ftype: int, flags: int, parts: Pieces, raw: int, checksum: int) -> Pieces:
        wire = sum(len(p) for p in parts)
        if raw > MAX_PAYLOAD:  # the peer would refuse it: say so here, where the bug is
            raise FrameTooLarge(size=raw, limit=MAX_PAYLOAD, offset=self.wire_bytes)
        head = HEADER.pack(MAGIC, VERSION, ftype, flags, wire, raw, checksum)
        self.raw_bytes += raw + HEADER_SIZE
        self.wire_bytes += wire + HEADER_SIZE
        return [head + _CRC.pack(zlib.crc32(head)), *(p for p in parts if len(p))]


class FrameDecoder:
    """Incremental decoder: ``feed`` any chunks, get whole messages back."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._zstd = Decompressor()
        self.offset = 0  # stream offset of the start of ``_buf``
        self.frames = 0
        self.hello: Hello | None = None

    def feed(self, chunk: ReadableBuffer) -> list[Item]:
        self._buf += chunk
        out: list[Item] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= HEADER_SIZE:
            at = self.offset + pos
            ftype, flags, wire, raw, checksum = self._header(buf, pos, at)
            if len(buf) - pos - HEADER_SIZE < wire:
                break
            start = pos + HEADER_SIZE
            with memoryview(buf) as view:
                payload = bytes(view[start : start + wire])
            if flags == FLAG_ZSTD:
                if ftype != DataRun.TYPE:
                    raise ProtocolError(detail=f"compressed frame of type {ftype} at offset {at}")
                payload = self._zstd.decompress(payload, raw, at)
            if len(payload) != raw or xxhash.xxh3_64_intdigest(payload) != checksum:
                raise FrameCorrupt(what="payload checksum", offset=at)
            if ftype == T_HELLO:
                if self.frames:
                    raise ProtocolError(detail=f"Hello after the first frame, at offset {at}")
                self.hello = _hello(payload, at)
            else:
                out.append(_decode(ftype, payload, at))
            self.frames += 1
            pos = start + wire
        if pos:
            del buf[:pos]
            self.offset += pos
        return out

    def _header(self, buf: bytearray, pos: int, at: int) -> tuple[int, int, int, int, int]:
        """The checked header at ``pos``: type, flags, payload and raw lengths, checksum."""
        magic, version, ftype, flags, wire, raw, checksum = HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise FrameCorrupt(what=f"magic ({bytes(magic)!r}, want {MAGIC!r})", offset=at)
        crc_ok = _CRC.unpack_from(buf, pos + HEADER.size)[0] == zlib.crc32(
            buf[pos : pos + HEADER.size]
        )
        if version != VERSION and (crc_ok or not self.frames):
            raise UnsupportedVersion(version=version, supported=VERSION)
        if not crc_ok:
            raise FrameCorrupt(what="header CRC", offset=at)
        if wire > MAX_PAYLOAD or raw > MAX_PAYLOAD:
            raise FrameTooLarge(size=max(wire, raw), limit=MAX_PAYLOAD, offset=at)
        if flags & ~FLAG_ZSTD or buf[pos + 5 : pos + 8] != b"\0\0\0":
            raise ProtocolError(detail=f"unknown flags or reserved bits set at offset {at}")
        if not flags and wire != raw:
            raise FrameCorrupt(what=f"length (raw frame of {wire} bytes, RAW_LEN {raw})", offset=at)
        return ftype, flags, wire, raw, checksum

    def finish(self) -> None:
        """The stream ended: anything left over is a cut-off frame."""
        if self._buf:
            raise TruncatedStream(offset=self.offset, pending=len(self._buf))


def _hello(p: bytes, at: int) -> Hello:
    try:
        caps = json.loads(p[1:]) if p else None
        if not isinstance(caps, dict):
            raise ValueError("capabilities are not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(detail=f"bad Hello at offset {at}: {exc}") from exc
    return Hello(p[0], caps)


def _decode(ftype: int, p: bytes, at: int) -> Item:
    try:
        if ftype == DataRun.TYPE:
            return DataRun(_U64.unpack_from(p)[0], memoryview(p)[8:])
        if ftype == BlockDigests.TYPE:
            start, count, bs = _DIGHDR.unpack_from(p)
            zbytes = -(-count // 8)
            zero, digests = p[20 : 20 + zbytes], p[20 + zbytes :]
            if len(zero) != zbytes or len(digests) % 16:
                raise ValueError("digest payload has the wrong length")
            return BlockDigests(start, count, bs, zero, digests)
        if ftype == DiskInfo.TYPE:
            size, bs = _INFO.unpack(p)
            return DiskInfo(size, bs)
        if ftype == ZeroRun.TYPE:
            offset, length = _U64x2.unpack(p)
            return ZeroRun(offset, length)
        if ftype == Done.TYPE:
            if len(p) not in (8, 24):
                raise ValueError("Done payload has the wrong length")
            return Done(_U64.unpack_from(p)[0], p[8:])
        if ftype == T_CONTROL:
            data = json.loads(p)
            if not isinstance(data, dict):
                raise ValueError("control payload is not an object")
            return Control(data)
        if ftype == T_END:
            if p:
                raise ValueError("End has a payload")
            return End()
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(detail=f"bad frame of type {ftype} at offset {at}: {exc}") from exc
    raise UnknownFrameType(type=ftype, offset=at)


def iter_messages(chunks: Iterable[ReadableBuffer]) -> Iterator[Item]:
    """The messages of a byte stream; TruncatedStream if it stops mid-frame."""
    decoder = FrameDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    decoder.finish()


async def aiter_messages(chunks: AsyncIterable[ReadableBuffer]) -> AsyncIterator[Item]:
    """The same over an async byte stream (Starlette's ``request.stream()``)."""
    decoder = FrameDecoder()
    async for chunk in chunks:
        for item in decoder.feed(chunk):
            yield item
    decoder.finish()
