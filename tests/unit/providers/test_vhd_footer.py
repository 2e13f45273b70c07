"""The fixed-VHD footer, byte by byte (the layout is in vhd.py's docstring)."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime

import pytest

from vmdr.providers.azure import vhd
from vmdr.providers.azure.errors import VhdInvalid

GiB = 1 << 30


def test_footer_fields_sit_where_the_specification_puts_them() -> None:
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime(2024, 1, 1, tzinfo=UTC)
    footer = vhd.make_footer(GiB, unique_id=uid, timestamp=when)
    assert len(footer) == 512
    assert footer[0:8] == b"conectix"
    assert struct.unpack(">I", footer[8:12])[0] == 2  # features: the reserved bit
    assert struct.unpack(">I", footer[12:16])[0] == 0x00010000
    assert footer[16:24] == b"\xff" * 8  # fixed: no data offset
    assert struct.unpack(">I", footer[24:28])[0] == int(
        (when - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds()
    )
    assert footer[28:32] == b"win " and footer[36:40] == b"Wi2k"
    assert struct.unpack(">QQ", footer[40:56]) == (GiB, GiB)
    assert struct.unpack(">HBB", footer[56:60]) == (2080, 16, 63)
    assert struct.unpack(">I", footer[60:64])[0] == 2  # fixed
    checksum = struct.unpack(">I", footer[64:68])[0]
    assert checksum == ~(sum(footer) - sum(footer[64:68])) & 0xFFFFFFFF
    assert footer[68:84] == uid.bytes
    assert footer[84:] == bytes(428)  # saved state 0, then reserved zeros


@pytest.mark.parametrize(
    ("size", "chs"),
    [
        # Values qemu-img writes for these sizes (its calculate_geometry follows the spec).
        (134250496, (964, 16, 17)),
        (1073995776, (2081, 16, 63)),
        (10737893376, (20806, 16, 63)),
        (42951106560, (20561, 16, 255)),
        (200 * GiB, (65535, 16, 255)),
        (4 << 40, (65535, 16, 255)),  # clamped: the size field is what counts
    ],
)
def test_geometry_follows_the_specification(size: int, chs: tuple[int, int, int]) -> None:
    assert vhd.geometry(size) == chs


def test_parse_round_trips_and_refuses_damage() -> None:
    footer = vhd.make_footer(128 << 20)
    parsed = vhd.parse_footer(footer)
    assert parsed.current_size == parsed.original_size == 128 << 20 and parsed.disk_type == 2
    damaged = bytearray(footer)
    damaged[45] ^= 1
    with pytest.raises(VhdInvalid, match="checksum"):
        vhd.parse_footer(bytes(damaged))
    with pytest.raises(VhdInvalid, match="conectix"):
        vhd.parse_footer(bytes(512))
    dynamic = bytearray(footer)
    dynamic[60:64] = struct.pack(">I", 3)
    dynamic[64:68] = bytes(4)
    dynamic[64:68] = struct.pack(">I", ~(sum(dynamic)) & 0xFFFFFFFF)
    with pytest.raises(VhdInvalid, match="dynamic") as info:
        vhd.parse_footer(bytes(dynamic))
    assert info.value.code == "VMDR-E0720"


def test_sizes_must_be_whole_pages() -> None:
    with pytest.raises(ValueError):
        vhd.make_footer(1000)
