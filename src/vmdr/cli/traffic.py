"""`vmdr traffic …`: the traffic manager's profiles and endpoints.

    vmdr traffic create shop --dns-name www --ttl 30 [--item web-01]
    vmdr traffic add-endpoint shop onprem --site primary --address 10.0.0.10 \\
        --priority 1 --probe http:80/health [--interval 10 --timeout 5 --tolerated 2]
    vmdr traffic list | show shop | events shop
    vmdr traffic cutover shop --site recovery
    vmdr traffic enable shop | disable shop | delete shop | remove-endpoint shop onprem
"""

from __future__ import annotations

import re
from typing import Any

import typer

from vmdr.cli.output import console, emit_json, fail
from vmdr.cli.remote import JsonOption, call, show
from vmdr.model.errors import UsageError

__all__ = ["add_commands", "parse_probe"]

_PROBE = re.compile(r"^(?P<protocol>https?|tcp):(?P<port>\d{1,5})(?P<path>/\S*)?$")


def parse_probe(text: str) -> dict[str, Any]:
    """``http:80/health``, ``https:443/``, ``tcp:22`` → a probe description."""
    m = _PROBE.match(text)
    if not m:
        raise UsageError(
            detail=f"probe {text!r}: write it as http:PORT/PATH, https:PORT/PATH or tcp:PORT"
        )
    probe: dict[str, Any] = {"protocol": m["protocol"], "port": int(m["port"])}
    if m["path"] and m["protocol"] != "tcp":
        probe["path"] = m["path"]
    return probe


def _print(profile: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(profile)
        return
    state = "enabled" if profile["enabled"] else "DISABLED"
    console.print(
        f"[bold]{profile['name']}[/]: {profile['dns_name']} (TTL {profile['ttl']} s, "
        f"{state}) -> {', '.join(profile['published'] or ['(not set by vmdr)'])}"
    )
    show(
        profile["endpoints"],
        ["name", "site", "address", "priority", "enabled", "healthy", "detail"],
        "endpoints",
        False,
    )


def add_commands(app: typer.Typer) -> None:
    traffic = typer.Typer(help="DNS names kept pointed at the active site.")

    @traffic.command("create")
    def create(
        name: str,
        dns_name: str = typer.Option(..., help="The name inside the zone, e.g. www."),
        ttl: int = typer.Option(30, help="TTL of the record, seconds."),
        item: str | None = typer.Option(None, help="The protected item it serves (cutover)."),
        as_json: bool = JsonOption,
    ) -> None:
        """Create a traffic profile."""
        body = {"name": name, "dns_name": dns_name, "ttl": ttl, "item": item}
        _print(call("POST", "/v1/traffic-profiles", as_json, body), as_json)

    @traffic.command("add-endpoint")
    def add_endpoint(
        profile: str,
        endpoint: str,
        site: str = typer.Option(..., help="primary (on-premises) or recovery (cloud)."),
        address: str = typer.Option(..., help="IPv4 address published in DNS."),
        priority: int = typer.Option(1, help="1 is preferred."),
        probe: str | None = typer.Option(None, help="http:PORT/PATH, https:PORT/PATH, tcp:PORT"),
        interval: float = typer.Option(10.0, help="Seconds between probes."),
        timeout: float = typer.Option(5.0, help="Seconds a probe may take."),
        tolerated: int = typer.Option(2, help="Failed probes tolerated before 'down'."),
        expect: int = typer.Option(200, help="HTTP status a healthy endpoint answers."),
        as_json: bool = JsonOption,
    ) -> None:
        """Add an endpoint (an address of one site) to a profile."""
        body: dict[str, Any] = {
            "name": endpoint,
            "site": site,
            "address": address,
            "priority": priority,
        }
        if probe:
            try:
                spec = parse_probe(probe)
            except UsageError as exc:
                fail(exc, as_json)
            body["probe"] = {
                **spec,
                "interval": interval,
                "timeout": timeout,
                "tolerated": tolerated,
                "expect": expect,
            }
        _print(call("POST", f"/v1/traffic-profiles/{profile}/endpoints", as_json, body), as_json)

    @traffic.command("remove-endpoint")
    def remove_endpoint(profile: str, endpoint: str, as_json: bool = JsonOption) -> None:
        """Remove an endpoint from a profile."""
        path = f"/v1/traffic-profiles/{profile}/endpoints/{endpoint}"
        _print(call("DELETE", path, as_json), as_json)

    @traffic.command("list")
    def list_profiles(as_json: bool = JsonOption) -> None:
        """List traffic profiles."""
        rows = call("GET", "/v1/traffic-profiles", as_json)
        show(rows, ["name", "dns_name", "ttl", "enabled", "published", "item"], "traffic", as_json)

    @traffic.command("show")
    def show_profile(profile: str, as_json: bool = JsonOption) -> None:
        """One profile with its endpoints' health."""
        _print(call("GET", f"/v1/traffic-profiles/{profile}", as_json), as_json)

    @traffic.command("events")
    def events(profile: str, as_json: bool = JsonOption) -> None:
        """The profile's recent health changes and DNS updates."""
        data = call("GET", f"/v1/traffic-profiles/{profile}", as_json)
        show(data["events"], ["time", "kind", "message"], "events", as_json)

    @traffic.command("cutover")
    def cutover(
        profile: str,
        site: str = typer.Option(..., help="primary or recovery."),
        timeout: float = typer.Option(120.0, help="How long the probe may take to pass."),
        as_json: bool = JsonOption,
    ) -> None:
        """Move the profile's name to a site (probe first, then DNS)."""
        body = {"site": site, "timeout": timeout}
        _print(call("POST", f"/v1/traffic-profiles/{profile}/cutover", as_json, body), as_json)

    for verb, value in (("enable", True), ("disable", False)):

        def toggle(profile: str, as_json: bool = JsonOption, _value: bool = value) -> None:
            _print(
                call("PATCH", f"/v1/traffic-profiles/{profile}", as_json, {"enabled": _value}),
                as_json,
            )

        toggle.__doc__ = (
            "Enable a profile (it adopts the record as it is now)."
            if value
            else "Disable a profile: vmdr stops changing its record."
        )
        traffic.command(verb)(toggle)

    @traffic.command("delete")
    def delete(profile: str, as_json: bool = JsonOption) -> None:
        """Delete a profile (the DNS record is left as it is)."""
        result = call("DELETE", f"/v1/traffic-profiles/{profile}", as_json)
        emit_json(result) if as_json else console.print(f"deleted {profile}; {result['note']}")

    app.add_typer(traffic, name="traffic")
