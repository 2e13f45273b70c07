"""The wire codec: exact round trips, incremental decoding, corruption and hostile input caught."""

from __future__ import annotations

import asyncio
import os
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
import xxhash
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done, ZeroRun
from vmdr.transport import compression, frames
from vmdr.transport.errors import (
    FrameCorrupt,
    FrameTooLarge,
    ProtocolError,
    TruncatedStream,
    UnknownFrameType,
    UnsupportedVersion,
)

MiB = 1 << 20
H = frames.HEADER_SIZE


def encode_all(items: list[frames.Item], compress: bool = False) -> bytes:
    enc = frames.Encoder(compress=compress)
    return b"".join(bytes(p) for item in items for p in enc.encode(item))


def same(a: frames.Item, b: frames.Item) -> bool:
    if isinstance(a, DataRun) and isinstance(b, DataRun):
        return a.offset == b.offset and bytes(a.data) == bytes(b.data)
    return a == b


def joined(items: list[frames.Item]) -> bytes:
    """The data of DataRuns, in order."""
    return b"".join(bytes(m.data) for m in items if isinstance(m, DataRun))


def flags_of(blob: bytes) -> list[int]:
    """FLAGS of every frame of an encoded stream."""
    out, pos = [], 0
    while pos < len(blob):
        _, _, _, flags, wire, _, _ = frames.HEADER.unpack_from(blob, pos)
        out.append(flags)
        pos += H + wire
    return out


def header(
    ftype: int, wire: int, raw: int, version: int = 1, checksum: int = 0, flags: int = 0
) -> bytes:
    head = frames.HEADER.pack(b"VF", version, ftype, flags, wire, raw, checksum)
    return head + struct.pack("<I", zlib.crc32(head))


def frame(ftype: int, payload: bytes, flags: int = 0, raw: bytes | None = None) -> bytes:
    """A hand-made frame; ``raw`` is the uncompressed payload when ``flags`` says zstd."""
    plain = payload if raw is None else raw
    sum_ = xxhash.xxh3_64_intdigest(plain)
    return header(ftype, len(payload), len(plain), checksum=sum_, flags=flags) + payload


def sample() -> list[frames.Item]:
    mask = np.array([True, False, False, True, False] * 20, dtype=bool)
    digests = os.urandom(16 * int((~mask).sum()))
    return [
        frames.Control({"op": "begin", "initial": True, "resume_from": 0}),
        DiskInfo(10 << 30, 65536),
        BlockDigests.build(7, 65536, mask, digests),
        BlockDigests.holes(107, 1000, 65536),
        DataRun(0, os.urandom(3 * MiB)),
        DataRun(3 * MiB, b"disk text " * 600_000),  # 6 MB, compressible
        DataRun(9 * MiB, b""),
        ZeroRun(5 * MiB, 7 * MiB),
        Done(10 << 30, os.urandom(16)),
        Done(10 << 30),
        frames.Control({"op": "cut", "time": 1.5, "tag": "t", "kind": "app"}),
        frames.End(),
    ]


@pytest.mark.parametrize("compress", [False, True])
def test_every_message_round_trips(compress: bool) -> None:
    items = sample()
    blob = encode_all(items, compress)
    out = list(frames.iter_messages([blob]))
    assert len(out) == len(items)
    assert all(same(a, b) for a, b in zip(items, out, strict=True))
    assert (frames.FLAG_ZSTD in flags_of(blob)) is compress
    digests = out[2]
    assert isinstance(digests, BlockDigests)
    assert np.array_equal(digests.zero_mask(), np.array([True, False, False, True, False] * 20))


def test_block_digest_rows_survive_the_wire() -> None:
    mask = np.zeros(4096, dtype=bool)
    mask[100:900] = True
    digests = np.arange(2 * int((~mask).sum()), dtype=np.uint64).tobytes()
    sent = BlockDigests.build(0, 65536, mask, digests)
    (got,) = frames.iter_messages([encode_all([sent])])
    assert isinstance(got, BlockDigests)
    assert np.array_equal(got.rows(), sent.rows())


def test_compressible_data_is_compressed_random_data_is_not() -> None:
    enc = frames.Encoder(compress=True)
    text = b"".join(bytes(p) for p in enc.encode(DataRun(0, b"abc" * MiB)))
    assert len(text) < MiB // 10
    noise = os.urandom(MiB)
    raw = b"".join(bytes(p) for p in enc.encode(DataRun(0, noise)))
    assert flags_of(raw) == [0]
    assert raw[H + 8 :] == noise
    assert len(raw) == MiB + 8 + H


def test_after_misses_frames_are_probed_and_compressible_ones_still_compressed() -> None:
    enc = frames.Encoder(compress=True)
    assert enc.compressor is not None
    stats = enc.compressor.stats
    for _ in range(compression.PROBE_AFTER + 3):
        enc.encode(DataRun(0, os.urandom(64 << 10)))
    assert (stats.raw, stats.probed_out) == (compression.PROBE_AFTER, 3)  # not tried in full
    text = b"".join(bytes(p) for p in enc.encode(DataRun(0, b"log line 42\n" * 6000)))
    assert flags_of(text) == [frames.FLAG_ZSTD] and stats.kept == 1
    enc.encode(DataRun(0, os.urandom(64 << 10)))
    assert stats.raw == compression.PROBE_AFTER + 1  # the streak started over


def test_small_runs_are_not_compressed() -> None:
    blob = encode_all([DataRun(0, bytes(compression.MIN_SIZE - 1))], compress=True)
    assert flags_of(blob) == [0]


def test_compression_negotiated_off_sends_everything_raw() -> None:
    agreed = frames.negotiate(frames.Hello.ours(), frames.Hello.ours(compress=False))
    assert not agreed.compress
    enc = frames.Encoder.agreed(agreed)
    blob = b"".join(bytes(p) for p in enc.encode(DataRun(0, bytes(3 * MiB))))
    assert flags_of(blob) == [0] and len(blob) == 3 * MiB + 8 + H


def test_negotiation() -> None:
    ours = frames.Hello.ours()
    theirs = frames.Hello(1, {"compression": ["lz4", "zstd"], "max_frame": 1 << 20, "x": 1})
    assert frames.negotiate(ours, theirs) == frames.Agreement(1, True, 1 << 20)
    assert frames.negotiate(ours, frames.Hello(7, {})) == frames.Agreement(1, False, 8 << 20)
    for bad in ({"compression": "zstd"}, {"max_frame": 10}, {"max_frame": "big"}):
        with pytest.raises(ProtocolError):
            frames.negotiate(ours, frames.Hello(1, bad))
    with pytest.raises(UnsupportedVersion):
        frames.negotiate(ours, frames.Hello(0, {}))


def test_hello_is_kept_by_the_decoder_not_yielded() -> None:
    hello = frames.Hello(3, {"compression": ["zstd"], "max_frame": 1 << 20})
    enc = frames.Encoder()
    blob = b"".join(bytes(p) for m in (hello, frames.End()) for p in enc.encode(m))
    dec = frames.FrameDecoder()
    assert dec.feed(blob) == [frames.End()]
    assert dec.hello == hello
    with pytest.raises(ProtocolError, match="Hello after the first frame"):
        frames.FrameDecoder().feed(encode_all([frames.End()]) + blob)
    with pytest.raises(ProtocolError, match="bad Hello"):
        frames.FrameDecoder().feed(frame(frames.T_HELLO, b"\x01[1]"))


def test_long_runs_are_split_under_the_frame_limit() -> None:
    data = os.urandom(frames.MAX_DATA * 2 + 5)
    out = list(frames.iter_messages([encode_all([DataRun(100, data)])]))
    assert [m.offset for m in out if isinstance(m, DataRun)] == [
        100,
        100 + frames.MAX_DATA,
        100 + 2 * frames.MAX_DATA,
    ]
    assert joined(out) == data


def test_agreed_max_frame_splits_runs() -> None:
    enc = frames.Encoder(max_frame=frames.MIN_FRAME)
    data = os.urandom(3 * frames.MIN_FRAME)
    blob = b"".join(bytes(p) for p in enc.encode(DataRun(0, data)))
    out = list(frames.iter_messages([blob]))
    assert len(out) == 4 and joined(out) == data


def test_encoder_refuses_a_frame_the_peer_would_refuse() -> None:
    count = (frames.MAX_PAYLOAD // 16) + 1
    too_many = BlockDigests(0, count, 4096, bytes(-(-count // 8)), bytes(16 * count))
    with pytest.raises(FrameTooLarge):
        frames.Encoder().encode(too_many)


def test_decoder_takes_any_chunking() -> None:
    items: list[frames.Item] = [
        DiskInfo(1 << 20, 4096),
        DataRun(4096, b"xy" * 3000),
        ZeroRun(0, 4096),
        frames.End(),
    ]
    blob = encode_all(items, compress=True)
    assert frames.FLAG_ZSTD in flags_of(blob)
    for cut in range(1, len(blob)):
        dec = frames.FrameDecoder()
        out = dec.feed(blob[:cut]) + dec.feed(memoryview(blob)[cut:])
        dec.finish()
        assert len(out) == len(items), cut
        assert all(same(a, b) for a, b in zip(items, out, strict=True)), cut
    dec = frames.FrameDecoder()
    out = [m for i in range(len(blob)) for m in dec.feed(blob[i : i + 1])]
    dec.finish()
    assert len(out) == len(items)
    assert all(same(a, b) for a, b in zip(items, out, strict=True))


def test_async_stream() -> None:
    items = sample()
    blob = encode_all(items, compress=True)

    async def body() -> AsyncIterator[bytes]:
        for pos in range(0, len(blob), 65536):
            yield blob[pos : pos + 65536]

    async def collect() -> list[frames.Item]:
        return [m async for m in frames.aiter_messages(body())]

    out = asyncio.run(collect())
    assert len(out) == len(items)
    assert all(same(a, b) for a, b in zip(items, out, strict=True))


@pytest.mark.parametrize("compress", [False, True])
def test_flipped_payload_bit_is_caught(compress: bool) -> None:
    blob = bytearray(encode_all([DiskInfo(1, 512), DataRun(0, b"q" * 70_000)], compress))
    assert flags_of(bytes(blob))[1] == (frames.FLAG_ZSTD if compress else 0)
    blob[-10] ^= 0x01
    with pytest.raises(FrameCorrupt) as err:
        list(frames.iter_messages([bytes(blob)]))
    assert err.value.code == "VMDR-E0301"
    assert err.value.offset == H + 12  # the second frame, after the DiskInfo frame
    if not compress:
        assert err.value.what == "payload checksum"


@pytest.mark.parametrize("position", range(0, H))
def test_flipped_header_bit_is_caught(position: int) -> None:
    first = encode_all([DiskInfo(1, 512)])
    blob = bytearray(first + encode_all([DataRun(0, b"z" * 1000)]))
    blob[len(first) + position] ^= 0x10
    with pytest.raises(FrameCorrupt) as err:
        list(frames.iter_messages([bytes(blob)]))
    assert err.value.offset == len(first)
    assert err.value.what.startswith("magic" if position < 2 else "header CRC")


def test_truncated_stream_at_every_cut() -> None:
    items: list[frames.Item] = [DiskInfo(1, 512), DataRun(0, b"z" * 1000), frames.End()]
    blob = encode_all(items)
    bounds = {0, H + 12, 2 * H + 12 + 1008, len(blob)}
    for cut in range(len(blob) + 1):
        dec = frames.FrameDecoder()
        dec.feed(blob[:cut])
        if cut in bounds:
            dec.finish()
            continue
        with pytest.raises(TruncatedStream) as err:
            dec.finish()
        assert err.value.code == "VMDR-E0304"
        assert err.value.offset == max(b for b in bounds if b < cut)


def test_oversized_frame_is_refused_before_its_payload_arrives() -> None:
    dec = frames.FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as err:
            dec.feed(header(3, 1 << 31, 1 << 31) + b"x" * 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.code == "VMDR-E0302" and err.value.size == 1 << 31
    assert peak < MiB
    with pytest.raises(FrameTooLarge):  # the decompressed size is bounded too
        frames.FrameDecoder().feed(header(3, 100, frames.MAX_PAYLOAD + 1, flags=1))


def test_zstd_payload_claiming_a_huge_size_is_corrupt_not_allocated() -> None:
    # One raw zstd block of 100 bytes in a frame whose header says 1 TiB:
    # zstandard would allocate what the zstd header says.
    block = (1 | 100 << 3).to_bytes(3, "little")
    bomb = struct.pack("<IBQ", 0xFD2FB528, 0xE0, 1 << 40) + block + b"x" * 100
    assert zstandard.frame_content_size(bomb) == 1 << 40
    with pytest.raises(FrameCorrupt, match="zstd content size"):
        frames.FrameDecoder().feed(frame(3, bomb, flags=1, raw=b"x" * 100))


def test_compressed_payload_with_trailing_bytes_is_corrupt() -> None:
    raw = bytes(8) + b"a" * 10_000
    packed = zstandard.ZstdCompressor().compress(raw)
    (got,) = frames.iter_messages([frame(3, packed, flags=1, raw=raw)])  # a valid frame
    assert same(got, DataRun(0, raw[8:]))
    with pytest.raises(FrameCorrupt, match="unused data"):
        frames.FrameDecoder().feed(frame(3, packed + b"junk", flags=1, raw=raw))


def test_other_version() -> None:
    with pytest.raises(UnsupportedVersion) as err:
        frames.FrameDecoder().feed(header(3, 0, 0, version=2))
    assert err.value.code == "VMDR-E0303" and err.value.version == 2
    # A future version may lay out its header differently: the first frame's
    # version is believed even when our CRC does not match.
    blob = bytearray(encode_all([frames.End()]))
    blob[2] = 2
    with pytest.raises(UnsupportedVersion):
        frames.FrameDecoder().feed(bytes(blob))


def test_unknown_type_flags_and_reserved_bits() -> None:
    with pytest.raises(UnknownFrameType) as err:
        frames.FrameDecoder().feed(frame(99, b""))
    assert err.value.code == "VMDR-E0305"
    raw = bytes(8) + b"a" * 10_000
    packed = zstandard.ZstdCompressor().compress(raw)
    with pytest.raises(ProtocolError, match="unknown flags"):
        frames.FrameDecoder().feed(frame(3, packed, flags=3, raw=raw))
    reserved = bytearray(frame(frames.T_END, b""))
    reserved[6] = 1
    reserved[24:28] = struct.pack("<I", zlib.crc32(reserved[:24]))
    with pytest.raises(ProtocolError, match="reserved"):
        frames.FrameDecoder().feed(bytes(reserved))
    with pytest.raises(ProtocolError, match="compressed frame of type 4"):
        frames.FrameDecoder().feed(frame(4, packed, flags=1, raw=raw))


@pytest.mark.parametrize(
    ("ftype", "payload"),
    [
        (frames.T_CONTROL, b"[1, 2]"),
        (frames.T_CONTROL, b"\xff"),
        (frames.T_END, b"x"),
        (DiskInfo.TYPE, b"short"),
        (Done.TYPE, bytes(12)),
        (BlockDigests.TYPE, struct.pack("<QQI", 0, 16, 4096) + bytes(2) + bytes(15)),
    ],
)
def test_semantically_bad_payload_is_a_protocol_error(ftype: int, payload: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        frames.FrameDecoder().feed(frame(ftype, payload))
    assert err.value.code == "VMDR-E0306"


def test_errors_have_codes_and_fixes() -> None:
    err = FrameCorrupt(what="header CRC", offset=56)
    assert str(err).startswith("VMDR-E0301: frame at stream offset 56: the header CRC")
    assert err.remedy and err.http_status == 400


def _digests(draw: st.DrawFn) -> BlockDigests:
    mask = np.array(draw(st.lists(st.booleans(), min_size=1, max_size=200)), dtype=bool)
    digests = draw(st.binary(min_size=16, max_size=16)) * int((~mask).sum())
    return BlockDigests.build(draw(st.integers(0, 1 << 40)), 4096, mask, digests)


data = st.one_of(
    st.binary(max_size=20_000),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(512, 4000)),
)
items = st.one_of(
    st.builds(DataRun, st.integers(0, 1 << 40), data),
    st.builds(ZeroRun, st.integers(0, 1 << 40), st.integers(0, 1 << 40)),
    st.builds(DiskInfo, st.integers(0, 1 << 50), st.sampled_from([4096, 65536])),
    st.builds(Done, st.integers(0, 1 << 50), st.sampled_from([b"", b"r" * 16])),
    st.composite(_digests)(),
    st.builds(lambda d: frames.Control(d), st.dictionaries(st.text(max_size=5), st.integers())),
    st.just(frames.End()),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(items, max_size=12), st.lists(st.integers(1, 5000), max_size=20), st.booleans())
def test_random_streams_round_trip(msgs: list[frames.Item], cuts: list[int], z: bool) -> None:
    blob = encode_all(msgs, compress=z)
    dec, out, pos = frames.FrameDecoder(), [], 0
    for size in cuts:
        out += dec.feed(blob[pos : pos + size])
        pos += size
    out += dec.feed(blob[pos:])
    dec.finish()
    assert len(out) == len(msgs)
    assert all(same(a, b) for a, b in zip(msgs, out, strict=True))
