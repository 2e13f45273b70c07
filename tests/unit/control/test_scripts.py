"""Scripts run by plans and replication groups: only executable files
directly in <state>/scripts, a clean environment, a timeout, the output's tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdr.control.scripts import OUTPUT_KEPT, ScriptUnusable, run_script, scripts_folder


def script(state: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = scripts_folder(state) / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def test_a_script_runs_with_its_args_and_only_the_given_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_OF_THE_SERVER", "do-not-pass")
    script(tmp_path, "show.sh", 'echo "$1 $VMDR_GROUP [$SECRET_OF_THE_SERVER] $(pwd)"; exit 3\n')
    done = run_script(tmp_path, "show.sh", ["shop"], 10, {"VMDR_GROUP": "g1"})
    assert done.returncode == 3
    assert done.output == f"shop g1 [] {(tmp_path / 'scripts').resolve()}\n"


@pytest.mark.parametrize("name", ["../outside.sh", "/bin/sh", "missing.sh", "plain.txt"])
def test_anything_but_an_executable_file_in_the_folder_is_refused(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "outside.sh").write_text("#!/bin/sh\ntouch ran\n")
    (tmp_path / "outside.sh").chmod(0o755)
    script(tmp_path, "plain.txt", "touch ran\n", mode=0o644)
    with pytest.raises(ScriptUnusable) as refused:
        run_script(tmp_path, name, [], 10, {})
    assert refused.value.code == "VMDR-E0913"
    assert not (tmp_path / "ran").exists() and not (tmp_path / "scripts" / "ran").exists()


def test_a_script_over_its_timeout_is_stopped(tmp_path: Path) -> None:
    script(tmp_path, "slow.sh", "sleep 30\n")
    with pytest.raises(ScriptUnusable, match="timeout"):
        run_script(tmp_path, "slow.sh", [], 0.5, {})


def test_only_the_tail_of_a_long_output_is_kept(tmp_path: Path) -> None:
    script(tmp_path, "loud.sh", "printf 'a%.0s' $(seq 100000); echo END\n")
    done = run_script(tmp_path, "loud.sh", [], 10, {})
    assert len(done.output) == OUTPUT_KEPT and done.output.endswith("aEND\n")
