"""Credentials at rest: sealed with a per-server key kept owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vmdr.control.secrets import SecretBox, SecretUnreadable


def test_seal_open_and_key_file(tmp_path: Path) -> None:
    box = SecretBox.in_folder(tmp_path / "cs")
    sealed = box.seal("p@ss word")
    assert b"p@ss" not in sealed
    assert SecretBox.in_folder(tmp_path / "cs").open(sealed) == "p@ss word"  # same key again
    assert stat.S_IMODE((tmp_path / "cs" / "secret.key").stat().st_mode) == 0o600
    assert "p@ss" not in repr(box)
    with pytest.raises(SecretUnreadable) as err:
        SecretBox.in_folder(tmp_path / "other").open(sealed)
    assert err.value.code == "VMDR-E0520"
