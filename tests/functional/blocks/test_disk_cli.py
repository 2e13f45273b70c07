"""``vmdr disk`` on real files, through Typer's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmdr.cli.disk import app, parse_block_size

from .helpers import KiB, MiB, change_blocks, make_file, random_image, same_bytes

runner = CliRunner()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return random_image(tmp_path / "src.img", 6 * MiB + 3 * KiB, seed=11)


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_copy_resync_verify_with_json(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.img"
    code, out, _ = invoke("copy", str(src), dst.as_uri(), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["operation"] == "copy"
    for key in ("read", "written", "skipped_zero", "skipped_equal", "seconds", "sent"):
        assert key in report
    assert same_bytes(src, dst)

    change_blocks(dst, [64 * KiB, 3 * MiB], 64 * KiB, seed=12)
    code, out, _ = invoke("resync", str(src), str(dst), "--json", "--block-size", "64KiB")
    assert code == 0, out
    report = json.loads(out)
    assert report["written"] + report["zeroed"] <= 2 * 64 * KiB
    assert same_bytes(src, dst)

    code, out, _ = invoke("verify", str(src), str(dst), "--json")
    assert code == 0
    assert json.loads(out)["equal"] is True


def test_human_output(src: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("copy", str(src), str(tmp_path / "d.img"))
    assert code == 0 and out.startswith("copy: ")
    code, out, _ = invoke("verify", str(src), str(tmp_path / "d.img"), "--parallel")
    assert code == 0 and out.startswith("equal: ")


def test_verify_mismatch_exits_4_with_its_code(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.img"
    invoke("copy", str(src), str(dst))
    change_blocks(dst, [2 * MiB], 10, seed=13)
    code, _, err = invoke("verify", str(src), str(dst))
    assert code == 4
    assert "VMDR-E0220" in err and str(2 * MiB) in err
    code, out, _ = invoke("verify", str(src), str(dst), "--json")
    assert code == 4
    report = json.loads(out)
    assert report["equal"] is False and report["error"]["code"] == "VMDR-E0220"
    assert report["differences"] == [{"start": 2 * MiB, "length": 64 * KiB, "zero": False}]


@pytest.mark.parametrize(
    "args,code,error",
    [
        (["copy", "ftp://x/y", "{dst}"], 2, "VMDR-E0201"),
        (["copy", "{tmp}/missing.img", "{dst}"], 1, "VMDR-E0203"),
        (["resync", "{src}", "{tmp}/missing.img"], 1, "VMDR-E0203"),
        (["copy", "{src}", "{dst}", "--block-size", "48K"], 2, "VMDR-E0205"),
        (["copy", "{src}", "{dst}", "--block-size", "lots"], 2, "VMDR-E0205"),
        (["resync", "{src}", "{big}"], 1, "VMDR-E0206"),
        (["verify", "{src}", "memory:nothing-here"], 1, "VMDR-E0203"),
    ],
    ids=[
        "unknown-scheme",
        "missing-source",
        "missing-target",
        "block-size-not-power-of-two",
        "block-size-garbage",
        "target-larger",
        "missing-memory-disk",
    ],
)
def test_errors_print_their_code_and_exit_with_it(
    src: Path, tmp_path: Path, args: list[str], code: int, error: str
) -> None:
    big = make_file(tmp_path / "big.img", src.stat().st_size + MiB)
    values = {
        "src": str(src),
        "dst": str(tmp_path / "dst.img"),
        "tmp": str(tmp_path),
        "big": str(big),
    }
    argv = [a.format(**values) for a in args]
    got, _, err = invoke(*argv)
    assert got == code
    assert error in err and "fix:" in err
    got, out, _ = invoke(*argv, "--json")
    assert got == code and json.loads(out)["error"]["code"] == error


def test_parse_block_size() -> None:
    assert parse_block_size("64K") == parse_block_size("65536") == 64 * KiB
    assert parse_block_size("1MiB") == parse_block_size("1m") == MiB


def test_copy_into_a_vmdk_descriptor(src: Path, tmp_path: Path) -> None:
    from .helpers import write_descriptor

    size = src.stat().st_size // 512 * 512
    trimmed = make_file(tmp_path / "trim.img", size, [(0, src.read_bytes()[:size])])
    flat = make_file(tmp_path / "vm-flat.vmdk", size, [(0, os.urandom(4096))])
    desc = write_descriptor(tmp_path, "vm.vmdk", size)
    code, _, err = invoke("resync", str(trimmed), str(desc))
    assert code == 0, err
    assert same_bytes(trimmed, flat)
