"""The traffic manager: DNS names kept pointed at the active site.

Profiles (a DNS name, a TTL, priority routing, optionally the protected item
they serve) hold endpoints (an address per site, a priority, an enabled flag
and a probe). The configuration server probes the endpoints
(``routing.probes``), keeps their health with tolerance and points each
enabled profile's name at the preferred healthy endpoint (``model.routing``)
through RFC 2136 updates with TSIG and a prerequisite (``routing.dns``).

**Cutover** is a step of failover, failback and cancel: the active site's
endpoints get the first priorities, the step probes the new first endpoint
until it passes, then moves the record; it runs after the item's state has
changed, so a cutover that fails (DNS down, probe never passing) fails the
job with its code but does not undo the failover — run it again with
``vmdr traffic cutover PROFILE --site SITE``.

A record changed outside vmdr is never overwritten: the update is refused
(VMDR-E0902), the profile is disabled and an event says so; enabling it
again adopts the record as it is then.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.dataplane import DataPlane
from vmdr.control.db.models import RoutingEvent, TrafficEndpoint, TrafficProfile
from vmdr.model.errors import VmdrError
from vmdr.model.routing import EndpointView, ProbeHealth, after_probe, choose, priorities_for
from vmdr.routing.dns import DnsServer, DnsUnreachable, RecordChangedElsewhere, RoutingError
from vmdr.routing.probes import ProbeSpec, probe

__all__ = ["CutoverFailed", "TrafficManager"]

log = logging.getLogger(__name__)
CUTOVER_PROBE_TIMEOUT = 120.0
DNS_ATTEMPTS = 4


class CutoverFailed(VmdrError):
    code = "VMDR-E0904"
    msg = "cutover of {profile} to {site}: {detail}"
    fix = (
        "The failover itself stands. Fix the endpoint (is the application up on {address}?) "
        "and run `vmdr traffic cutover {profile} --site {site}`."
    )


class DnsNotConfigured(VmdrError):
    code = "VMDR-E0905"
    msg = "the traffic manager has no DNS server to update ({path})"
    fix = "Add a 'dns' section (server, port, zone, key_name, algorithm, secret_file) to it."


def _view(e: TrafficEndpoint) -> EndpointView:
    healthy = e.healthy if e.probe else True  # no probe: taken as up while enabled
    return EndpointView(e.name, e.site, e.address, e.priority, e.enabled, healthy)


class TrafficManager:
    def __init__(self, sessions: sessionmaker[Session], dataplane: Any, tick: float = 1.0):
        self.sessions, self._dataplane, self.tick = sessions, dataplane, tick
        # One DNS change at a time from this process; a cutover holds it from
        # its priority change to its own update, so that the probing thread
        # does not move the record in between on the new priorities.
        self.lock = threading.RLock()
        self.stop = threading.Event()

    # -- plumbing --------------------------------------------------------------------------
    def dns(self) -> DnsServer:
        plane: DataPlane = self._dataplane()
        if plane.dns is None:
            raise DnsNotConfigured(path=str(plane.path))
        return DnsServer.from_spec(plane.dns.model_dump(mode="json", exclude_none=True))

    def event(self, s: Session, profile: TrafficProfile, kind: str, message: str) -> None:
        s.add(RoutingEvent(profile_id=profile.id, time=time.time(), kind=kind, message=message))
        log.info("traffic %s %s: %s", profile.name, kind, message)

    def start(self) -> None:
        threading.Thread(target=self._run, name="traffic-manager", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.tick):
            try:
                self.probe_due()
                self.route_all()
            except Exception:  # keep probing whatever one round met
                log.exception("traffic manager")

    # -- probes ----------------------------------------------------------------------------
    def probe_due(self, force: set[str] | None = None) -> None:
        now = time.time()
        with self.sessions() as s:
            due = [
                (e.id, e.address, dict(e.probe))
                for e in s.scalars(select(TrafficEndpoint).where(TrafficEndpoint.enabled))
                if e.probe
                and (
                    (force and e.id in force)
                    or now - (e.probed_at or 0) >= ProbeSpec.from_dict(e.probe).interval
                )
            ]
        for endpoint_id, address, spec_raw in due:
            spec = ProbeSpec.from_dict(spec_raw)
            result = probe(address, spec)
            with self.sessions.begin() as s:
                e = s.get(TrafficEndpoint, endpoint_id)
                if e is None:
                    continue
                state = after_probe(ProbeHealth(e.healthy, e.failures), result.ok, spec.tolerated)
                if state.healthy != e.healthy:
                    self.event(
                        s,
                        e.profile,
                        "health",
                        f"{e.name} is {'up' if state.healthy else 'down'}: {result.detail}",
                    )
                e.healthy, e.failures = state.healthy, state.failures
                e.probed_at, e.detail = time.time(), result.detail

    # -- routing ---------------------------------------------------------------------------
    def route_all(self) -> None:
        with self.sessions() as s:
            ids = list(s.scalars(select(TrafficProfile.id).where(TrafficProfile.enabled)))
        for profile_id in ids:
            try:
                self.route(profile_id)
            except RoutingError as exc:
                log.warning("traffic: %s", exc.message)

    def route(self, profile_id: str) -> str | None:
        """Point the profile's name at its preferred healthy endpoint; return the address."""
        with self.sessions() as s:
            p = s.get(TrafficProfile, profile_id)
            if p is None or not p.enabled:
                return None
            chosen = choose([_view(e) for e in p.endpoints])
            if chosen is None or [chosen.address] == (p.published or []):
                return chosen.address if chosen else None
        return self.publish(profile_id, chosen.address, because=f"{chosen.name} preferred")

    def publish(self, profile_id: str, address: str, because: str) -> str:
        dns = self.dns()
        with self.lock:
            with self.sessions() as s:
                p = s.get(TrafficProfile, profile_id)
                assert p is not None
                name, ttl, published = p.dns_name, p.ttl, p.published
            if published == [address]:
                return address  # already there: no update, no event
            expected = published if published is not None else dns.addresses(name)
            try:
                dns.replace(name, [address], ttl, expected)
            except RecordChangedElsewhere as exc:
                with self.sessions.begin() as s:
                    p = s.get(TrafficProfile, profile_id)
                    assert p is not None
                    p.enabled = False
                    self.event(s, p, "conflict", f"{exc.message}; profile disabled")
                raise
            with self.sessions.begin() as s:
                p = s.get(TrafficProfile, profile_id)
                assert p is not None
                p.published = [address]
                old = ", ".join(expected) or "nothing"
                self.event(s, p, "dns", f"{dns.fqdn(name)} {old} -> {address} ({because})")
        return address

    # -- cutover (a workflow step) -----------------------------------------------------------
    def cutover(self, profile_id: str, site: str, timeout: float = CUTOVER_PROBE_TIMEOUT) -> str:
        with self.lock:
            return self._cutover(profile_id, site, timeout)

    def _cutover(self, profile_id: str, site: str, timeout: float) -> str:
        with self.sessions.begin() as s:
            p = s.get(TrafficProfile, profile_id)
            if p is None:
                raise VmdrError(detail=f"no traffic profile {profile_id}")
            order = priorities_for([_view(e) for e in p.endpoints], site)
            for e in p.endpoints:
                e.priority = order[e.name]
            first = min(p.endpoints, key=lambda e: e.priority, default=None)
            if first is None or first.site != site:
                raise CutoverFailed(
                    profile=p.name,
                    site=site,
                    address="-",
                    detail=f"the profile has no endpoint on site {site}",
                )
            if not p.enabled:  # a cutover is an explicit decision: adopt the record as it is
                p.enabled, p.published = True, None
            self.event(s, p, "cutover", f"to {site}: {first.name} ({first.address}) first")
            name, target, endpoint_id, has_probe = (
                p.name,
                first.address,
                first.id,
                bool(first.probe),
            )
        deadline = time.monotonic() + timeout
        while has_probe:
            self.probe_due(force={endpoint_id})
            with self.sessions() as s:
                now = s.get(TrafficEndpoint, endpoint_id)
                if now is not None and now.healthy:
                    break
                detail = now.detail if now else "endpoint gone"
            if time.monotonic() > deadline:
                raise CutoverFailed(
                    profile=name,
                    site=site,
                    address=target,
                    detail=f"its probe did not pass in {timeout:.0f} s ({detail})",
                )
            time.sleep(1.0)
        for attempt in range(DNS_ATTEMPTS):
            try:
                return self.publish(profile_id, target, because=f"cutover to {site}")
            except DnsUnreachable:
                if attempt == DNS_ATTEMPTS - 1:
                    raise
                time.sleep(2.0 * (attempt + 1))
        raise AssertionError("unreachable")

    def cutover_item(
        self, item_id: str, site: str, timeout: float = CUTOVER_PROBE_TIMEOUT
    ) -> list[str]:
        with self.sessions() as s:
            ids = list(
                s.scalars(select(TrafficProfile.id).where(TrafficProfile.item_id == item_id))
            )
        return [self.cutover(profile_id, site, timeout) for profile_id in ids]
