from __future__ import annotations

import pytest

from vmdr.blocks import BadDescriptor, BadURL, DiskNotFound, UnknownScheme, open_backend
from vmdr.blocks.file import parse_descriptor, path_of, sniff
from vmdr.blocks.memory import delete
from vmdr.blocks.urls import split_scheme

DESCRIPTOR = """# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="{type}"

# Extent description
{extent}

#DDB
ddb.virtualHWVersion = "14"
"""


def descriptor(
    extent: str = 'RW 2048 FLAT "disk-flat.vmdk" 0', type_: str = "monolithicFlat"
) -> str:
    return DESCRIPTOR.format(extent=extent, type=type_)


def test_split_scheme() -> None:
    assert split_scheme("/a/b.img") == ("file", "/a/b.img")
    assert split_scheme("rel/b.img") == ("file", "rel/b.img")
    assert split_scheme("file:///a/b.img") == ("file", "file:///a/b.img")
    assert split_scheme("MEMORY:x") == ("memory", "MEMORY:x")
    with pytest.raises(UnknownScheme) as info:
        split_scheme("s3://bucket/disk")
    assert info.value.code == "VMDR-E0201" and info.value.exit_code == 2
    assert "file:" in info.value.remedy


def test_file_url_paths() -> None:
    assert path_of("file:///srv/disk%20one.img") == "/srv/disk one.img"
    assert path_of("file://localhost/srv/d.img") == "/srv/d.img"
    assert path_of("file:rel.img") == "rel.img"
    for bad in ("file://otherhost/d.img", "file:///d.img?x=1", "file:"):
        with pytest.raises(BadURL):
            path_of(bad)


def test_memory_url_semantics() -> None:
    delete("t-disk")
    with pytest.raises(DiskNotFound) as info:
        open_backend("memory:t-disk")
    assert info.value.code == "VMDR-E0203"
    with open_backend("memory:t-disk?size=4096", "rw") as a:
        a.write(0, b"hello")
    with open_backend("memory://t-disk") as b:  # same disk, by name
        buf = bytearray(5)
        b.readinto(0, buf)
        assert buf == b"hello"
    with pytest.raises(BadURL):
        open_backend("memory:t-disk?size=8192")  # exists with another size
    delete("t-disk")
    with open_backend("memory:t-disk", "rw", create=True) as c:
        assert c.size() == 0
    delete("t-disk")
    with open_backend("memory:") as anon:
        assert anon.size() == 0 and not anon.shareable
    for bad in ("memory:?size=x", "memory:?align=3", "memory:?bogus=1", "memory:?size=-5"):
        with pytest.raises(BadURL) as err:
            open_backend(bad)
        assert err.value.code == "VMDR-E0202"


def test_mode_must_be_r_or_rw() -> None:
    with pytest.raises(ValueError):
        open_backend("memory:", "w")  # type: ignore[arg-type]


def test_sniff() -> None:
    assert sniff(b"# Disk DescriptorFile\nversion=1") == "descriptor"
    assert sniff(b"KDMV\x01\x00") == "sparse"
    assert sniff(b"\0" * 20) == "raw"


def test_parse_monolithic_flat_and_vmfs() -> None:
    ext = parse_descriptor("/ds/vm/disk.vmdk", descriptor())
    assert ext.path == "/ds/vm/disk-flat.vmdk" and ext.size == 2048 * 512 and ext.writable
    vmfs = parse_descriptor("/ds/vm/disk.vmdk", descriptor('RW 8 VMFS "d-flat.vmdk"', "vmfs"))
    assert vmfs.path == "/ds/vm/d-flat.vmdk" and vmfs.size == 4096
    sub = parse_descriptor("/ds/vm/disk.vmdk", descriptor('RDONLY 8 FLAT "sub/d.vmdk" 0'))
    assert sub.path == "/ds/vm/sub/d.vmdk" and not sub.writable


@pytest.mark.parametrize(
    "text",
    [
        descriptor('RW 8 FLAT "/etc/passwd" 0'),
        descriptor('RW 8 FLAT "../other/d-flat.vmdk" 0'),
        descriptor('RW 8 FLAT "a/../../d-flat.vmdk" 0'),
        descriptor('RW 8 FLAT "" 0'),
        descriptor('RW 8 FLAT "a.vmdk" 0\nRW 8 FLAT "b.vmdk" 0', "twoGbMaxExtentFlat"),
        descriptor('RW 8 SPARSE "d-s001.vmdk"', "monolithicSparse"),
        descriptor('RW 8 FLAT "d-flat.vmdk" 512'),
        descriptor().replace("parentCID=ffffffff", "parentCID=12345678"),
        descriptor("", "monolithicFlat"),
    ],
    ids=[
        "absolute",
        "escaping",
        "escaping-nested",
        "empty-name",
        "two-extents",
        "sparse",
        "offset",
        "delta-disk",
        "no-extent",
    ],
)
def test_refused_descriptors(text: str) -> None:
    with pytest.raises(BadDescriptor) as info:
        parse_descriptor("/ds/vm/disk.vmdk", text)
    assert info.value.code == "VMDR-E0207"


@pytest.mark.parametrize(
    "url",
    ["disk\x00.img", "R\x07\x01", "/dev/null\n", "ok\udcc9"],
    ids=["nul", "bell", "lf", "surrogate"],
)
def test_a_url_with_control_characters_or_invalid_text_is_refused(url: str) -> None:
    """From a request's JSON these reached os.open: ValueError, a 500."""
    with pytest.raises(BadURL) as err:
        open_backend(url)
    assert err.value.code == "VMDR-E0202"
