"""`vmdr serve` settings, typed and loaded once: a flag wins over the
environment, which wins over the TOML file; a key the service does not know,
a value of the wrong shape or a missing one is refused with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdr.cli.settings import MasterTargetOptions, ProcessServerOptions, WorkerOptions
from vmdr.model.errors import UsageError

MT = (
    'state_dir = "/var/lib/vmdr/mt"\nport = 9443\n'
    'datastore = ["vmfs-01=/vmfs/volumes/vmfs-01"]\nretention_dir = "/retention"\n'
    'retention_hours = 48\nretention_quota = "20G"\ngrant_key = "/etc/vmdr/grant-key.pem"\n'
)


def test_flags_win_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mt.toml"
    config.write_text(MT)
    s = MasterTargetOptions.load(config, {"port": 9999, "state_dir": None, "datastore": []})
    assert s.port == 9999  # the flag
    assert s.state_dir == Path("/var/lib/vmdr/mt")  # unset flag: the file
    assert s.datastore == ["vmfs-01=/vmfs/volumes/vmfs-01"]  # empty list flag: the file
    assert (s.retention_hours, s.retention_quota, s.retention_min_free) == (48, 20 << 30, 256 << 20)
    monkeypatch.setenv("VMDR_MASTER_TARGET_RETENTION_HOURS", "12")
    monkeypatch.setenv("VMDR_PROCESS_SERVER_RETENTION_HOURS", "1")  # another service's
    assert MasterTargetOptions.load(config, {}).retention_hours == 12
    assert MasterTargetOptions.load(config, {"retention_hours": 6}).retention_hours == 6


def test_a_broken_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("port = = 1")
    with pytest.raises(UsageError) as err:
        MasterTargetOptions.load(config, {})
    assert err.value.code == "VMDR-E0001" and "bad.toml" in err.value.message


def test_unknown_missing_and_malformed_settings_are_refused_together(tmp_path: Path) -> None:
    config = tmp_path / "ps.toml"
    config.write_text('state_dir = "/s"\nprot = 9443\nbandwidth = "lots"\n')
    with pytest.raises(UsageError) as err:
        ProcessServerOptions.load(config, {})
    message = err.value.message
    assert "'prot' is not a setting of this service" in message
    assert "--port is required (flag --port, VMDR_PROCESS_SERVER_PORT or the config file)" in (
        message
    )
    assert "--bandwidth: Value error, 'lots' is not a size" in message
    assert "--master-target-token-file is required" in message
    assert "--grant-key is required" in message  # no role runs without its grant key


def test_a_worker_needs_its_database(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        WorkerOptions.load(None, {"state_dir": tmp_path})
    assert "--database is required" in err.value.message
    worker = WorkerOptions.load(None, {"state_dir": tmp_path, "database": "postgresql://x/y"})
    assert worker.log_level == "info"
