"""`vmdr serve` settings: a TOML file, and flags that win over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdr.cli.serve import _settings
from vmdr.model.errors import UsageError


def test_flags_win_over_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "mt.toml"
    config.write_text(
        'state_dir = "/var/lib/vmdr/mt"\nport = 9443\n'
        'datastore = ["vmfs-01=/vmfs/volumes/vmfs-01"]\nretention_hours = 48\n'
    )
    s = _settings(config, {"port": 9999, "state_dir": None, "datastore": []})
    assert s["port"] == 9999  # the flag
    assert s["state_dir"] == "/var/lib/vmdr/mt"  # unset flag: the file
    assert s["datastore"] == ["vmfs-01=/vmfs/volumes/vmfs-01"]  # empty list flag: the file
    assert s["retention_hours"] == 48


def test_a_broken_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("port = = 1")
    with pytest.raises(UsageError) as err:
        _settings(config, {})
    assert err.value.code == "VMDR-E0001" and "bad.toml" in err.value.message
