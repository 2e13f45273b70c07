"""Replication health of a protected item, from its recovery point objective
(RPO: how old the newest recovery point is). Pure.

====================  =========================================================
health                when
====================  =========================================================
Normal                RPO within the threshold, and the last cycle succeeded
Warning               RPO up to twice the threshold, or the last cycle failed
                      while the RPO is still within it, or no point yet
Critical              RPO beyond twice the threshold
====================  =========================================================

The threshold defaults to 15 minutes, as ASR's RPO alert does.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_RPO_THRESHOLD", "Health", "replication_health"]

DEFAULT_RPO_THRESHOLD = 900.0
Health = Literal["Normal", "Warning", "Critical"]


def replication_health(
    rpo: float | None, threshold: float = DEFAULT_RPO_THRESHOLD, failing: bool = False
) -> Health:
    if rpo is None:
        return "Warning"
    if rpo > 2 * threshold:
        return "Critical"
    if rpo > threshold or failing:
        return "Warning"
    return "Normal"
