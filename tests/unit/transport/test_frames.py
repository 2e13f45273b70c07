"""The wire codec: exact round trips, incremental decoding, corruption caught."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done, ZeroRun
from vmdr.transport import frames
from vmdr.transport.errors import (
    FrameCorrupt,
    FrameTooLarge,
    ProtocolError,
    TruncatedStream,
    UnknownFrameType,
    UnsupportedVersion,
)

MiB = 1 << 20


def encode_all(items: list[frames.Item], compress: bool = False) -> bytes:
    enc = frames.Encoder(compress=compress)
    return b"".join(bytes(p) for item in items for p in enc.encode(item))


def same(a: frames.Item, b: frames.Item) -> bool:
    if isinstance(a, DataRun) and isinstance(b, DataRun):
        return a.offset == b.offset and bytes(a.data) == bytes(b.data)
    return a == b


def sample() -> list[frames.Item]:
    mask = np.array([True, False, False, True, False] * 20, dtype=bool)
    digests = os.urandom(16 * int((~mask).sum()))
    return [
        frames.Control({"op": "begin", "initial": True, "resume_from": 0}),
        DiskInfo(10 << 30, 65536),
        BlockDigests.build(7, 65536, mask, digests),
        BlockDigests.holes(107, 1000, 65536),
        DataRun(0, os.urandom(3 * MiB)),
        DataRun(3 * MiB, b"disk text " * 100_000),
        ZeroRun(5 * MiB, 7 * MiB),
        Done(10 << 30, os.urandom(16)),
        Done(10 << 30),
        frames.Control({"op": "cut", "time": 1.5, "tag": "t", "kind": "app"}),
        frames.End(),
    ]


@pytest.mark.parametrize("compress", [False, True])
def test_every_message_round_trips(compress: bool) -> None:
    items = sample()
    out = list(frames.iter_messages([encode_all(items, compress)]))
    assert len(out) == len(items)
    assert all(same(a, b) for a, b in zip(items, out, strict=True))


def test_compressible_data_is_compressed_random_data_is_not() -> None:
    enc = frames.Encoder(compress=True)
    text = b"".join(bytes(p) for p in enc.encode(DataRun(0, b"abc" * MiB)))
    assert len(text) < MiB // 10
    noise = os.urandom(MiB)
    raw = b"".join(bytes(p) for p in enc.encode(DataRun(0, noise)))
    assert raw[4] == 0  # FLAGS: sent raw
    assert len(raw) == MiB + 8 + frames.HEADER_SIZE


def test_incompressible_streak_stops_trying_then_probes_again() -> None:
    enc = frames.Encoder(compress=True)
    for _ in range(frames.SKIP_AFTER):
        enc.encode(DataRun(0, os.urandom(64 << 10)))
    # Now skipping: even compressible data goes raw for SKIP_FRAMES frames.
    skipped = b"".join(bytes(p) for p in enc.encode(DataRun(0, bytes(64 << 10))))
    assert skipped[4] == 0
    for _ in range(frames.SKIP_FRAMES - 1):
        enc.encode(DataRun(0, bytes(64 << 10)))
    probed = b"".join(bytes(p) for p in enc.encode(DataRun(0, bytes(64 << 10))))
    assert probed[4] == frames.FLAG_ZSTD


def test_compression_off_sends_everything_raw() -> None:
    blob = encode_all([DataRun(0, bytes(MiB))], compress=False)
    assert blob[4] == 0 and len(blob) > MiB


def test_long_runs_are_split_under_the_frame_limit() -> None:
    data = os.urandom(frames.MAX_DATA * 2 + 5)
    out = list(frames.iter_messages([encode_all([DataRun(100, data)])]))
    assert [m.offset for m in out] == [100, 100 + frames.MAX_DATA, 100 + 2 * frames.MAX_DATA]
    assert b"".join(bytes(m.data) for m in out) == data


def test_decoder_takes_any_chunking() -> None:
    items = [DiskInfo(1 << 20, 4096), DataRun(4096, b"xy" * 3000), ZeroRun(0, 4096), frames.End()]
    blob = encode_all(items, compress=True)
    for cut in range(1, len(blob)):
        dec = frames.FrameDecoder()
        out = dec.feed(blob[:cut]) + dec.feed(blob[cut:])
        dec.finish()
        assert all(same(a, b) for a, b in zip(items, out, strict=True)), cut
    dec = frames.FrameDecoder()
    out = [m for i in range(len(blob)) for m in dec.feed(blob[i : i + 1])]
    assert all(same(a, b) for a, b in zip(items, out, strict=True))


@pytest.mark.parametrize("compress", [False, True])
def test_flipped_payload_bit_is_caught(compress: bool) -> None:
    blob = bytearray(encode_all([DiskInfo(1, 512), DataRun(0, b"q" * 70_000)], compress))
    blob[-10] ^= 0x01
    with pytest.raises(FrameCorrupt) as err:
        list(frames.iter_messages([bytes(blob)]))
    assert err.value.code == "VMDR-E0301"
    assert err.value.offset == 28 + 12  # the second frame, after the DiskInfo frame


@pytest.mark.parametrize("position", range(0, 28))
def test_flipped_header_bit_is_caught(position: int) -> None:
    blob = bytearray(encode_all([DataRun(0, b"z" * 1000)]))
    blob[position] ^= 0x10
    with pytest.raises((FrameCorrupt, UnsupportedVersion, FrameTooLarge)):
        list(frames.iter_messages([bytes(blob)]))


def test_truncated_stream() -> None:
    blob = encode_all([DataRun(0, b"z" * 1000)])
    with pytest.raises(TruncatedStream) as err:
        list(frames.iter_messages([blob[:-1]]))
    assert err.value.code == "VMDR-E0304"


def _header(ftype: int, wire: int, raw: int, version: int = 1, checksum: int = 0) -> bytes:
    head = frames.HEADER.pack(b"VF", version, ftype, 0, wire, raw, checksum)
    return head + struct.pack("<I", zlib.crc32(head))


def test_oversized_frame_is_refused_before_its_payload_arrives() -> None:
    dec = frames.FrameDecoder()
    with pytest.raises(FrameTooLarge) as err:
        dec.feed(_header(3, 1 << 31, 1 << 31))
    assert err.value.code == "VMDR-E0302"


def test_other_version_and_unknown_type() -> None:
    with pytest.raises(UnsupportedVersion):
        frames.FrameDecoder().feed(_header(3, 0, 0, version=2))
    import xxhash

    with pytest.raises(UnknownFrameType):
        frames.FrameDecoder().feed(_header(99, 0, 0, checksum=xxhash.xxh3_64_intdigest(b"")))


def test_semantically_bad_payload_is_a_protocol_error() -> None:
    import xxhash

    payload = b"[1, 2]"
    head = _header(frames.T_CONTROL, len(payload), len(payload),
                   checksum=xxhash.xxh3_64_intdigest(payload))  # fmt: skip
    with pytest.raises(ProtocolError):
        frames.FrameDecoder().feed(head + payload)


runs = st.one_of(
    st.builds(DataRun, st.integers(0, 1 << 40), st.binary(min_size=0, max_size=20_000)),
    st.builds(ZeroRun, st.integers(0, 1 << 40), st.integers(0, 1 << 40)),
    st.builds(DiskInfo, st.integers(0, 1 << 50), st.sampled_from([4096, 65536])),
    st.builds(lambda d: frames.Control(d), st.dictionaries(st.text(max_size=5), st.integers())),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(runs, max_size=12), st.lists(st.integers(1, 5000), max_size=20), st.booleans())
def test_random_streams_round_trip(items: list[frames.Item], cuts: list[int], z: bool) -> None:
    blob = encode_all(items, compress=z)
    dec, out, pos = frames.FrameDecoder(), [], 0
    for size in cuts:
        out += dec.feed(blob[pos : pos + size])
        pos += size
    out += dec.feed(blob[pos:])
    dec.finish()
    assert len(out) == len(items)
    assert all(same(a, b) for a, b in zip(items, out, strict=True))
