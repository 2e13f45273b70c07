"""Local scripts the configuration server runs for recovery plans and
replication groups: only executable files directly inside
``<state>/scripts/``, named (never a path) by the request, with a clean
environment, no stdin and a timeout. The caller keeps the output's tail."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmdr.model.errors import VmdrError

__all__ = ["OUTPUT_KEPT", "ScriptResult", "ScriptUnusable", "run_script", "scripts_folder"]

OUTPUT_KEPT = 8192


class ScriptUnusable(VmdrError):
    code = "VMDR-E0913"
    msg = "script {script!r} {detail}"
    fix = "Put an executable file of that name in {folder} (a name, not a path)."


@dataclass(frozen=True)
class ScriptResult:
    returncode: int
    output: str  # the last OUTPUT_KEPT bytes of stdout + stderr


def scripts_folder(state_dir: Path) -> Path:
    folder = state_dir / "scripts"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def run_script(
    state_dir: Path, name: str, args: list[str], timeout: float, env: dict[str, str]
) -> ScriptResult:
    folder = (state_dir / "scripts").resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file() or not os.access(path, os.X_OK):
        raise ScriptUnusable(script=name, detail="is not an executable file", folder=folder)
    try:
        done = subprocess.run(
            [str(path), *args],
            capture_output=True,
            timeout=timeout,
            cwd=folder,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ScriptUnusable(
            script=name, detail=f"ran over its {timeout:.0f} s timeout", folder=folder
        ) from exc
    output = (done.stdout + done.stderr)[-OUTPUT_KEPT:].decode(errors="replace")
    return ScriptResult(done.returncode, output)
