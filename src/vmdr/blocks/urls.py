"""Opening a disk by URL: ``open_backend(url, mode)``.

URLs: ``file:///abs/path``, ``file:rel/path`` or a plain path;
``memory:NAME?size=N&align=A`` (see ``vmdr.blocks.memory``);
``pageblob://ACCOUNT/CONTAINER/BLOB`` (the Azure provider). A scheme names
the module that opens it, imported only when such a URL is opened; its
``open_url(url, mode, create)`` builds the backend. New schemes register a
module in ``SCHEMES``.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Protocol

from vmdr.blocks.backend import Backend, Mode
from vmdr.blocks.errors import BadURL, UnknownScheme

__all__ = ["SCHEMES", "open_backend", "split_scheme"]

SCHEMES: dict[str, str] = {
    "file": "vmdr.blocks.file",
    "memory": "vmdr.blocks.memory",
    # Providers register their backends by module name, imported only when used.
    "pageblob": "vmdr.providers.azure.pageblob",
}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unusable(url: str) -> bool:
    """A URL no disk has: control characters (a NUL cut paths short), or
    text that is not valid Unicode (lone surrogates from a JSON request)."""
    if _CONTROL.search(url):
        return True
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _Opener(Protocol):
    def __call__(self, url: str, mode: Mode, create: bool) -> Backend: ...


def split_scheme(url: str) -> tuple[str, str]:
    """``(scheme, url)``; a plain path is ``("file", path)``.

    A string that only looks like it has a scheme (``disk:1.img``) is taken as a
    path when no such scheme is known and the file exists, so such file names
    still work; otherwise an unknown scheme is an error, never a guess."""
    if _unusable(url):
        shown = url.encode("unicode_escape", "backslashreplace").decode()[:200]
        raise BadURL(url=shown, detail="it holds control characters or invalid text")
    match = _SCHEME_RE.match(url)
    if match is None:
        return "file", url
    scheme = match.group(1).lower()
    if scheme in SCHEMES:
        return scheme, url
    if "://" not in url and os.path.exists(url):
        return "file", url
    raise UnknownScheme(url=url, scheme=scheme, known=", ".join(f"{s}:" for s in sorted(SCHEMES)))


def open_backend(url: str, mode: Mode = "r", *, create: bool = False) -> Backend:
    """Open the disk at ``url``. ``create`` makes a missing disk (empty, size 0;
    copy operations grow it to the source's size)."""
    if mode not in ("r", "rw"):
        raise ValueError(f"mode must be 'r' or 'rw', not {mode!r}")
    scheme, url = split_scheme(url)
    module = importlib.import_module(SCHEMES[scheme])
    opener: _Opener = module.open_url
    return opener(url, mode, create)
