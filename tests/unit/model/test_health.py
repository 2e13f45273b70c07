from __future__ import annotations

import pytest

from vmdr.model.health import replication_health


@pytest.mark.parametrize(
    ("rpo", "failing", "health"),
    [
        (0.0, False, "Normal"),
        (900.0, False, "Normal"),
        (900.1, False, "Warning"),
        (1800.0, False, "Warning"),
        (1800.1, False, "Critical"),
        (10.0, True, "Warning"),
        (5000.0, True, "Critical"),
        (None, False, "Warning"),
    ],
)
def test_health_follows_the_rpo(rpo: float | None, failing: bool, health: str) -> None:
    assert replication_health(rpo, 900.0, failing) == health


def test_the_threshold_is_the_users() -> None:
    assert replication_health(100.0, threshold=60.0) == "Warning"
    assert replication_health(121.0, threshold=60.0) == "Critical"
