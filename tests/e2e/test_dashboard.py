"""The dashboard in a real browser (Debian's Chromium, headless, driven by
Playwright) against a lab of its own: log in, see the lab's items, fail a VM
over and watch the job finish, commit and reprotect it with the prechecks
and transfer plan shown first, see a refusal rendered with its code and fix,
run a test failover and its cleanup, approve a recovery plan's manual step,
see traffic endpoints' health; at phone width too. Screenshots go to
``tests/test-artifacts/dashboard/``.

The tests run in order on one lab (each continues from the previous one's
end state), like ``test_failback_cycle.py``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import add_site_endpoints, app_servers, running_lab, vmdr_json
from vmdr.lab import guest
from vmdr.lab.lab import Lab
from vmdr.lab.state import load_inventory

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's
# hosts, which this machine's closed network refuses (see docs/dashboard.md).
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
JOB_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def ui_lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("dashboard-lab"), request.session) as lab:
        for vm in ("web-01", "app-01", "db-01"):
            ok(lab, "protect", vm)
        yield lab


def ok(lab: Lab, *args: str, **env: str) -> Any:
    code, out = vmdr_json(lab, *args, **env)
    assert code == 0, out
    return out


def where(lab: Lab) -> dict[str, str]:
    return ok(lab, "lab", "dashboard")  # type: ignore[no-any-return]


def spki_pin(url: str, ca_file: str) -> str:
    """The server key's pin for Chromium, taken from a connection that
    verified the certificate against the lab's CA: the browser trusts this
    one key, nothing else (no blanket ``ignore_https_errors``)."""
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    with (
        socket.create_connection((host, int(port))) as sock,
        context.wrap_socket(sock, server_hostname=host) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(ui_lab: Lab) -> Iterator[Browser]:
    info = where(ui_lab)
    pin = spki_pin(info["url"], info["ca"])
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def shots(artifacts_dir: Path) -> Path:
    folder = artifacts_dir / "dashboard"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(browser: Browser, ui_lab: Lab) -> Iterator[Page]:
    """One tab, logged in once (its sessionStorage holds the token)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(where(ui_lab)["url"])
    yield tab
    context.close()
    assert errors == [], f"script errors in the page: {errors}"


def item(lab: Lab, vm: str) -> dict[str, Any]:
    return ok(lab, "items", "show", vm)  # type: ignore[no-any-return]


def open_item(page: Page, vm: str) -> None:
    page.get_by_role("link", name="Protected items").click()
    page.get_by_role("link", name=vm, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(vm)


def wait_for_job(page: Page, state: str = "succeeded") -> None:
    """The job page follows the job; wait until it shows the end state."""
    expect(page.locator("[data-job-state]")).to_have_attribute(
        "data-job-state", state, timeout=JOB_TIMEOUT_MS
    )


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls without a label and buttons without a name."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
             .filter((el) => el.offsetParent !== null || el.closest('dialog[open]'))
             .filter((el) => el.tagName === 'BUTTON'
                 ? !el.textContent.trim() && !el.getAttribute('aria-label')
                 : !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
             .map((el) => el.outerHTML.slice(0, 80))"""
    )


OPERATOR, PASSWORD = "olga", "olga-long-password"


def test_log_in_with_the_keyboard_and_see_the_labs_items(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    """A person logs in with their user and password (an operator, made by
    the administrator with the CLI); a wrong password and a wrong token are
    refused with their codes."""
    ok(ui_lab, "users", "add", OPERATOR, "--role", "operator", VMDR_PASSWORD=PASSWORD)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "user"
    page.keyboard.type(OPERATOR)
    page.keyboard.press("Tab")
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")
    expect(page.locator("#login-error")).to_contain_text("VMDR-E0358")
    assert page.locator("#password").input_value() == ""
    page.get_by_text("Log in with a token instead").click()
    page.locator("#token").fill("not-the-token")
    page.locator("#token").press("Enter")
    expect(page.locator("#login-error")).to_contain_text("VMDR-E0351")
    expect(page.locator("#nav")).to_be_hidden()  # nothing to navigate before logging in
    assert unlabelled_controls(page) == []
    page.screenshot(path=shots / "01-login-refused.png")

    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#logout")).to_have_text(f"Log out {OPERATOR}")
    expect(page.locator(".tile", has_text="protected items")).to_contain_text("3")
    page.screenshot(path=shots / "02-overview.png", full_page=True)
    # Both attempts are in the audit log, under the person's name.
    audit = ok(ui_lab, "audit", "--limit", "1000")
    logins = [e["status"] for e in audit
              if e["principal"] == f"user:{OPERATOR}" and e["path"] == "/v1/login"]  # fmt: skip
    assert logins == [401, 200], audit

    page.get_by_role("link", name="Protected items").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(3)
    for vm in ("app-01", "db-01", "web-01"):
        row = page.locator("tr", has=page.get_by_role("link", name=vm, exact=True))
        expect(row).to_contain_text("Protected")
        expect(row).to_contain_text("on-premises → cloud")
    page.screenshot(path=shots / "03-items.png", full_page=True)
    assert unlabelled_controls(page) == []


def test_fail_over_from_the_dashboard_and_watch_the_job_finish(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    open_item(page, "web-01")
    # Cancelling the dialog starts nothing.
    page.get_by_role("button", name="Fail over", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("No data is lost")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert item(ui_lab, "web-01")["state"] == "Protected"

    page.get_by_role("button", name="Fail over", exact=True).click()
    page.screenshot(path=shots / "04-failover-confirm.png")
    dialog.get_by_role("button", name="Fail over").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Job plannedFailover")
    wait_for_job(page)
    expect(page.locator("#job-progress")).to_have_attribute("value", re_all_steps(page))
    page.screenshot(path=shots / "05-failover-job.png", full_page=True)

    after = item(ui_lab, "web-01")
    assert (after["state"], after["active_site"]) == ("FailedOver", "recovery")
    open_item(page, "web-01")
    expect(page.locator("dl.facts")).to_contain_text("FailedOver")
    expect(page.locator("dl.facts")).to_contain_text("cloud")


def re_all_steps(page: Page) -> str:
    """The progress bar's max: every step done."""
    return str(page.locator("#job-progress").get_attribute("max"))


def test_a_refused_reprotect_shows_its_code_and_fix_and_cannot_be_confirmed(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    # app-01 has a snapshot on-premises: the seeds forbid reprotect (VMDR-E0803).
    for operation in ("failover", "commit"):
        ok(ui_lab, operation, "app-01")
    open_item(page, "app-01")
    page.get_by_role("button", name="Reprotect", exact=True).click()
    dialog = page.get_by_role("dialog")
    finding = dialog.locator('.finding[data-code="VMDR-E0803"]')
    expect(finding).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(finding).to_contain_text("error")
    expect(finding).to_contain_text("Fix:")
    expect(dialog.get_by_role("status")).to_contain_text("refused")
    expect(dialog.get_by_role("button", name="Reprotect")).to_be_disabled()
    assert unlabelled_controls(page) == []
    page.screenshot(path=shots / "06-reprotect-refused.png")
    dialog.get_by_role("button", name="Cancel").click()
    assert item(ui_lab, "app-01")["state"] == "Committed"


def test_commit_then_reprotect_with_the_plan_shown_first_then_fail_back(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    open_item(page, "web-01")
    page.get_by_role("button", name="Commit", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Commit").click()
    wait_for_job(page)

    open_item(page, "web-01")
    page.get_by_role("button", name="Reprotect", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("status")).to_contain_text("passed", timeout=JOB_TIMEOUT_MS)
    expect(dialog).to_contain_text("Every precheck passed")
    plan = dialog.get_by_role("table", name="Transfer plan")
    expect(plan.locator("tbody tr")).to_have_count(2)
    expect(plan).to_contain_text("[vmfs-01] web-01/web-01.vmdk")
    expect(plan.locator("tbody tr").first).to_contain_text("uuid")  # matched by disk UUID
    page.screenshot(path=shots / "07-reprotect-plan.png")
    dialog.get_by_role("button", name="Reprotect").click()
    wait_for_job(page)
    reprotected = item(ui_lab, "web-01")
    assert (reprotected["state"], reprotected["direction"]) == ("Protected", "recoveryToPrimary")
    # What the dialog promised is what crossed.
    assert reprotected["recovery_type"] == "OLR"

    open_item(page, "web-01")
    page.get_by_role("button", name="Fail back", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Fail back").click()
    wait_for_job(page)
    back = item(ui_lab, "web-01")
    assert (back["state"], back["active_site"]) == ("FailedOver", "primary")
    assert back["failback_proof"] and all(p["equal"] for p in back["failback_proof"].values())
    open_item(page, "web-01")
    expect(page.locator("dl.facts")).to_contain_text("2 of 2 disks proved equal")
    page.screenshot(path=shots / "08-failed-back.png", full_page=True)


def test_test_failover_and_cleanup_from_the_dashboard(page: Page, ui_lab: Lab, shots: Path) -> None:
    open_item(page, "db-01")
    page.get_by_role("button", name="Test failover", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Recovery point")).to_be_visible()
    dialog.get_by_role("button", name="Test failover").click()
    wait_for_job(page)
    assert item(ui_lab, "db-01")["state"] == "TestFailoverCompleted"
    assert item(ui_lab, "db-01")["test_failover"]

    open_item(page, "db-01")
    page.get_by_role("button", name="Test failover cleanup", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Test failover cleanup").click()
    wait_for_job(page)
    cleaned = item(ui_lab, "db-01")
    assert cleaned["state"] == "Protected" and not cleaned["test_failover"]
    page.screenshot(path=shots / "09-test-failover-cleaned.png", full_page=True)


def test_the_rpo_chart_draws_every_sample_the_server_kept(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    """Replication cycles every 2 s while db-01 writes, then none: the chart
    then shows exactly the samples the server kept (one RPO point each, one
    throughput bar per cycle that moved bytes)."""
    plane_file = ui_lab.directory / "configuration-server" / "dataplane.json"
    plane = json.loads(plane_file.read_text())
    vm = next(v for v in load_inventory(ui_lab.directory)["vms"] if v["name"] == "db-01")
    flat = Path(vm["disks"][0]["flat_path"])
    try:
        plane_file.write_text(json.dumps({**plane, "replication_interval": 2}))
        deadline = time.monotonic() + 180
        while True:
            offset = (8 + len(ok(ui_lab, "items", "points", "db-01"))) << 20
            guest.write(flat, offset, os.urandom(256 << 10))
            kept = ok(ui_lab, "items", "metrics", "db-01")["samples"]
            if len(kept) >= 3 and any(x["bytes"] for x in kept):
                break
            assert time.monotonic() < deadline, kept
            time.sleep(2)
    finally:
        plane_file.write_text(json.dumps(plane))
    wait_until_idle(ui_lab, "db-01")
    kept = ok(ui_lab, "items", "metrics", "db-01")["samples"]

    open_item(page, "db-01")
    chart = page.locator("figure.chart")
    expect(chart.locator("svg title")).to_have_text("Replication RPO and throughput")
    drawn = chart.locator("polyline[data-series=rpo]").get_attribute("points") or ""
    assert len(drawn.split()) == len([x for x in kept if x["rpo_seconds"] is not None])
    bars = [x for x in kept if x["bytes_per_second"]]
    expect(chart.locator("rect.rate")).to_have_count(len(bars))
    chart.get_by_text("Samples as a table").click()
    expect(chart.locator("table tbody tr")).to_have_count(min(len(kept), 50))
    chart.screenshot(path=shots / "10-rpo-chart.png")


def wait_until_idle(lab: Lab, vm: str) -> None:
    """No job (a replication cycle included) runs on the item."""
    deadline = time.monotonic() + 120
    while item(lab, vm)["running"] is not None or any(
        j["state"] in ("queued", "running") and j["kind"] == "replicate"
        for j in ok(lab, "jobs", "list")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_every_page_fits_a_phone_without_sideways_scrolling(
    browser: Browser, page: Page, ui_lab: Lab, shots: Path
) -> None:
    token = page.evaluate("sessionStorage.getItem('vmdr.token')")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = phone.new_page()
    tab.goto(where(ui_lab)["url"])
    tab.get_by_text("Log in with a token instead").click()
    tab.locator("#token").fill(token)
    tab.keyboard.press("Enter")
    expect(tab.get_by_role("heading", name="Overview")).to_be_visible()
    web = item(ui_lab, "web-01")["id"]
    for name, route in (("overview", "overview"), ("items", "items"), ("item", f"items/{web}"),
                        ("jobs", "jobs"), ("infrastructure", "infrastructure")):  # fmt: skip
        tab.evaluate(f"location.hash = '#/{route}'")
        expect(tab.locator("main")).to_have_attribute("data-page", f"/{route}")
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide on a 390 px screen"
        tab.screenshot(path=shots / f"11-phone-{name}.png", full_page=True)
    phone.close()


def test_a_plan_waits_on_its_manual_step_until_approved_on_the_plans_page(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    spec = {
        "groups": [
            {
                "name": "database",
                "items": ["db-01"],
                "before": [{"kind": "manual", "message": "Is the storage team ready?"}],
            }
        ]
    }
    spec_file = ui_lab.directory / "db-plan.json"
    spec_file.write_text(json.dumps(spec))
    ok(ui_lab, "plans", "create", "db-tier", "--file", str(spec_file))
    started = ok(ui_lab, "plans", "failover", "db-tier", "--no-wait")
    page.get_by_role("link", name="Recovery plans").click()
    card = page.locator(".card", has=page.get_by_role("heading", name="db-tier"))
    expect(card).to_contain_text("database: db-01")
    approve = card.get_by_role("button", name="Approve waiting step")
    expect(approve).to_be_visible(timeout=JOB_TIMEOUT_MS)
    # Nothing moves before a person says so.
    assert item(ui_lab, "db-01")["state"] == "Protected"
    page.screenshot(path=shots / "12-plan-waiting.png", full_page=True)
    expect(card).to_contain_text("Is the storage team ready?")
    approve.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Is the storage team ready?")
    dialog.get_by_role("button", name="Approve waiting step").click()
    # then the page follows the plan's job to its end
    expect(page.get_by_role("heading", level=1)).to_have_text("Job recoveryPlan")
    wait_for_job(page)
    assert ok(ui_lab, "jobs", "show", started["job"])["state"] == "succeeded"
    page.get_by_role("link", name="Recovery plans").click()
    expect(card.locator(".badge").first).to_have_text("succeeded")
    assert item(ui_lab, "db-01")["state"] == "FailedOver"


def test_the_traffic_page_shows_each_endpoints_probe_health(
    page: Page, ui_lab: Lab, shots: Path
) -> None:
    with app_servers("127.0.0.2", "127.0.0.3") as servers:
        ok(ui_lab, "traffic", "create", "shop", "--dns-name", "shop")
        add_site_endpoints(ui_lab, "shop", servers)
        servers[1].up = False  # type: ignore[attr-defined]
        page.get_by_role("link", name="Traffic").click()
        endpoints = page.get_by_role("table", name="Endpoints of shop")
        onprem = endpoints.locator("tr", has_text="onprem")
        cloud = endpoints.locator("tr", has_text="cloud")
        expect(onprem.locator(".badge")).to_have_text("healthy", timeout=30_000)
        expect(cloud.locator(".badge")).to_have_text("unhealthy", timeout=30_000)
        expect(page.locator(".card", has_text="shop")).to_contain_text("127.0.0.2")
        page.screenshot(path=shots / "13-traffic.png", full_page=True)
