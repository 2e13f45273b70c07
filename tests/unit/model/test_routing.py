"""Priority routing and probe tolerance (pure)."""

from __future__ import annotations

from vmdr.model.routing import EndpointView, ProbeHealth, after_probe, choose, priorities_for

ONPREM = EndpointView("onprem", "primary", "10.0.0.10", 1, True, True)
CLOUD = EndpointView("cloud", "recovery", "20.0.0.10", 2, True, True)


def test_the_preferred_healthy_endpoint_wins() -> None:
    assert choose([CLOUD, ONPREM]) == ONPREM


def test_an_unhealthy_or_disabled_endpoint_is_passed_over() -> None:
    from dataclasses import replace

    assert choose([replace(ONPREM, healthy=False), CLOUD]) == CLOUD
    assert choose([replace(ONPREM, enabled=False), CLOUD]) == CLOUD
    assert choose([replace(ONPREM, healthy=None), CLOUD]) == CLOUD  # not probed yet


def test_with_nothing_healthy_the_record_is_left_alone() -> None:
    from dataclasses import replace

    assert choose([replace(ONPREM, healthy=False), replace(CLOUD, enabled=False)]) is None
    assert choose([]) is None


def test_probe_failures_are_tolerated_then_counted() -> None:
    state = after_probe(ProbeHealth(), True, tolerated=2)
    assert state == ProbeHealth(True, 0)
    for expected in (True, True, False, False):
        state = after_probe(state, False, tolerated=2)
        assert state.healthy is expected
    assert after_probe(state, True, tolerated=2) == ProbeHealth(True, 0)


def test_an_endpoint_never_seen_up_stays_unknown_until_the_tolerance_runs_out() -> None:
    state = after_probe(ProbeHealth(), False, tolerated=1)
    assert state.healthy is None
    assert after_probe(state, False, tolerated=1).healthy is False


def test_a_cutover_puts_the_active_site_first() -> None:
    third = EndpointView("cloud-b", "recovery", "20.0.0.11", 3)
    assert priorities_for([ONPREM, CLOUD, third], "recovery") == {
        "cloud": 1, "cloud-b": 2, "onprem": 3,
    }  # fmt: skip
    assert priorities_for([ONPREM, CLOUD, third], "primary") == {
        "onprem": 1, "cloud": 2, "cloud-b": 3,
    }  # fmt: skip
