"""`vmdr lab up | status | down` as a user runs it: the real console script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vmdr.lab.lab import Lab

VMDR = str(Path(sys.executable).with_name("vmdr"))


def _vmdr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMDR, *args], capture_output=True, text=True, timeout=120, env=env or dict(os.environ)
    )


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def test_status_json_names_every_service_with_its_address(lab: Lab) -> None:
    result = _vmdr("lab", "status", "--dir", str(lab.directory), "--json")
    assert result.returncode == 0, result.stderr
    services = {s["name"]: s for s in json.loads(result.stdout)["services"]}
    assert set(services) == {
        "vcenter",
        "esx",
        "azurite",
        "dns",
        "master-target",
        "process-server",
        "configuration-server",
    }
    for svc in services.values():
        assert svc["state"] == "up"
        host, port = svc["address"].split(":")
        assert host == "127.0.0.1" and int(port) > 0


def test_second_up_is_refused_and_leaves_the_running_lab_alone(lab: Lab) -> None:
    result = _vmdr("lab", "up", "--dir", str(lab.directory), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "VMDR-E0101"
    assert all(s.state == "up" for s in lab.status())


def test_port_in_use_fails_clearly_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _vmdr("lab", "up", "--dir", str(tmp_path), "--dns-port", str(port))
    assert result.returncode == 1
    assert "VMDR-E0103" in result.stderr and str(port) in result.stderr
    assert "fix:" in result.stderr
    assert not (tmp_path / "lab.json").exists()
    assert _processes_mentioning(str(tmp_path)) == []


def test_missing_dependency_names_the_fix_and_starts_nothing(tmp_path: Path) -> None:
    empty_root = tmp_path / "checkout"
    empty_root.mkdir()
    env = dict(os.environ, VMDR_PROJECT_ROOT=str(empty_root))
    lab_dir = tmp_path / "lab"
    result = _vmdr("lab", "up", "--dir", str(lab_dir), env=env)
    assert result.returncode == 3
    assert "VMDR-E0002" in result.stderr
    assert "vCenter simulator" in result.stderr and "make bootstrap" in result.stderr
    assert _processes_mentioning(str(lab_dir)) == []


def test_crashed_service_is_reported_and_down_stops_the_rest(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    state = lab.up(populate=False)
    try:
        dns = state.service("dns")
        os.kill(dns.process.pid, signal.SIGKILL)
        result = _vmdr("lab", "status", "--dir", str(lab.directory), "--json")
        assert result.returncode == 1
        states = {s["name"]: s["state"] for s in json.loads(result.stdout)["services"]}
        assert states == {
            "vcenter": "up",
            "esx": "up",
            "azurite": "up",
            "dns": "down",
            "master-target": "up",
            "process-server": "up",
            "configuration-server": "up",
        }
    finally:
        result = _vmdr("lab", "down", "--dir", str(lab.directory), "--json")
    assert result.returncode == 0, result.stderr
    stopped = sorted(json.loads(result.stdout)["stopped"])
    assert stopped == [
        "azurite",
        "configuration-server",
        "esx",
        "master-target",
        "process-server",
        "vcenter",
    ]
    assert _processes_mentioning(str(lab.directory)) == []
    again = _vmdr("lab", "status", "--dir", str(lab.directory))
    assert again.returncode == 1 and "VMDR-E0102" in again.stderr


@pytest.mark.parametrize("args", [["lab", "status"], ["lab", "down"]])
def test_commands_on_a_folder_without_a_lab_say_so(tmp_path: Path, args: list[str]) -> None:
    result = _vmdr(*args, "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "VMDR-E0102" in result.stderr and "vmdr lab up" in result.stderr


def test_up_down_up_in_the_same_folder(tmp_path: Path) -> None:
    """The second `up` reuses the folder: credentials, and the configuration
    server's database, which already knows the sites and the vCenter."""
    lab = Lab(tmp_path / "lab")
    env = dict(os.environ, VMDR_LAB_DIR=str(lab.directory), XDG_CONFIG_HOME=str(tmp_path))
    for _ in range(2):
        lab.up()
        try:
            assert all(s.state == "up" for s in lab.status())
            result = _vmdr("machines", "list", "--json", env=env)
            assert result.returncode == 0, result.stderr
            assert "web-01" in {m["name"] for m in json.loads(result.stdout)}
        finally:
            lab.down()
