"""Priority routing, as Azure Traffic Manager's priority method does it. Pure.

A profile publishes one DNS name. Its endpoints (an on-premises and a cloud
address, say) each have a priority (1 = preferred), an enabled flag and a
health from probes. The name points at the preferred endpoint among those
enabled and healthy. When none is, the record is left as it is: removing it
would take the application off the network for certain, keeping it may not.

Health follows the probes with tolerance: an endpoint turns unhealthy only
after more than ``tolerated`` consecutive failed probes, and healthy again at
the first success — so one lost probe does not move traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["EndpointView", "ProbeHealth", "after_probe", "choose", "priorities_for"]


@dataclass(frozen=True)
class ProbeHealth:
    healthy: bool | None = None  # None: not probed yet
    failures: int = 0  # consecutive


def after_probe(state: ProbeHealth, ok: bool, tolerated: int) -> ProbeHealth:
    if ok:
        return ProbeHealth(healthy=True, failures=0)
    failures = state.failures + 1
    healthy = state.healthy if failures <= tolerated else False
    return replace(state, healthy=healthy, failures=failures)


@dataclass(frozen=True)
class EndpointView:
    name: str
    site: str
    address: str
    priority: int
    enabled: bool = True
    healthy: bool | None = None


def choose(endpoints: list[EndpointView]) -> EndpointView | None:
    """The endpoint the name should point at, or None to leave it alone.

    An endpoint not probed yet (health unknown) counts as healthy only when
    it has no probe at all, which the caller expresses as ``healthy=True``."""
    ready = [e for e in endpoints if e.enabled and e.healthy]
    return min(ready, key=lambda e: (e.priority, e.name)) if ready else None


def priorities_for(endpoints: list[EndpointView], active_site: str) -> dict[str, int]:
    """New priorities after a cutover: the active site's endpoints first, the
    others after them, each group in its former order."""
    ordered = sorted(endpoints, key=lambda e: (e.site != active_site, e.priority, e.name))
    return {e.name: i for i, e in enumerate(ordered, 1)}
