"""Real process server and master target processes on loopback TLS.

Each test gets its own pair (own state folders, own ports, one CA), started
with the real `vmdr serve …` command; tests can kill -9 and restart them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmdr.lab.pair import Pair


@pytest.fixture
def pair_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Pair] = []

    def make(**kwargs: Any) -> Pair:
        pair = Pair(tmp_path / f"pair{len(made)}", **kwargs)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.stop()


@pytest.fixture
def pair(pair_factory: Any) -> Pair:
    return pair_factory()  # type: ignore[no-any-return]
