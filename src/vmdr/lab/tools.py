"""Where the lab finds the programs it runs, and the error when one is missing.

The lab's programs are installed by ``make bootstrap`` (run by ``make demo`` and
``make test``): Debian's BIND, the vCenter simulator built from Debian's govmomi
into ``build/vcsim``, and Azurite from npm under ``tools/azurite``. Nothing is
looked up on the network at run time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vmdr.model.errors import DependencyMissing


def project_root() -> Path:
    """The checkout vmdr runs from (``VMDR_PROJECT_ROOT`` overrides)."""
    env = os.environ.get("VMDR_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tools" / "vcsim" / "main.go").exists():
            return parent
    return Path.cwd()


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        raise DependencyMissing(what=what, where=str(path))
    return path


def _require_program(name: str, what: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        raise DependencyMissing(what=what, where=f"PATH ({name})")
    return Path(found)


def vcsim_binary() -> Path:
    return _require_file(
        project_root() / "build" / "vcsim" / "vcsimdr",
        "the vCenter simulator (built from tools/vcsim/main.go)",
    )


def azurite_binary() -> Path:
    _require_program("node", "Node.js (Debian package nodejs)")
    return _require_file(
        project_root() / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob",
        "Azurite (npm package, installed under tools/azurite)",
    )


def named_binary() -> Path:
    return _require_program("named", "BIND 9 (Debian package bind9)")
