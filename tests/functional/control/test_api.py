"""The configuration server as a real process: register the lab's vCenter,
discover it through a job, read the inventory back; refusals with codes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmdr.lab.lab import Lab
from vmdr.lab.pair import Service
from vmdr.transport.client import RemoteError, ServiceClient, ServiceUnreachable


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[Service, ServiceClient]]:
    """A configuration server process on SQLite, then on PostgreSQL."""
    args = [] if database_url.startswith("sqlite") else ["--database", database_url]
    svc = Service("configuration-server", args, tmp_path / "cs", tmp_path / "pki")
    svc.start()
    token = (tmp_path / "cs" / "admin.token").read_text()
    with svc.client(token) as client:
        yield svc, client
    svc.stop()


def add_lab_vcenter(c: ServiceClient, lab: Lab) -> dict[str, Any]:
    """A site and the lab's vCenter, registered with its credentials and CA."""
    state = lab.state()
    assert state is not None
    vcenter, creds = state.service("vcenter"), lab.credentials()["vcenter"]
    site = c.post("/v1/sites", {"name": "on-premises", "role": "primary"})
    vc: dict[str, Any] = c.post("/v1/vcenters", {
        "site": site["id"], "name": "vc-lab", "url": vcenter.url, "user": creds["user"],
        "password": creds["password"], "ca_pem": Path(vcenter.details["ca"]).read_text(),
    })  # fmt: skip
    return vc


def test_discover_the_lab_vcenter_through_a_job(
    server: tuple[Service, ServiceClient], lab: Lab, lab_inventory: dict[str, Any]
) -> None:
    svc, c = server
    vc = add_lab_vcenter(c, lab)
    creds = lab.credentials()["vcenter"]
    assert "password" not in vc and "secret" not in str(vc)
    answer = c.post(f"/v1/vcenters/{vc['id']}/discover")
    assert answer["url"] == f"/v1/jobs/{answer['job']}"
    deadline = time.monotonic() + 60
    while (job := c.get(answer["url"]))["state"] in ("queued", "running"):
        assert job["finished"] is False  # what clients wait on
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["state"] == "succeeded" and job["finished"] is True, job
    page = c.get(f"{answer['url']}/events", params={"after": 0})
    assert page["finished"] is True and page["state"] == "succeeded"
    assert [(e["step"], e["kind"]) for e in job["events"] if e["kind"] != "progress"] == [
        ("discover", "start"), ("discover", "end"),
    ]  # fmt: skip
    machines = {m["name"]: m for m in c.get("/v1/machines")}
    for built in (vm for vm in lab_inventory["vms"] if vm["endpoint"] == "vcenter"):
        got = machines[built["name"]]
        assert [d["uuid"] for d in got["disks"]] == [d["uuid"] for d in built["disks"]]
    assert machines["db-01"]["enable_uuid"] is None
    assert machines["app-01"]["snapshots"] == 1
    assert {h["name"] for h in c.get("/v1/hosts")} >= {"esx-01", "esx-02", "esx-sa-01"}
    assert {d["name"] for d in c.get("/v1/datastores")} >= {"vmfs-01", "vsan-01", "nfs-01"}
    # Discovering again changes nothing (idempotent).
    again = c.post(f"/v1/vcenters/{vc['id']}/discover")
    while c.get(again["url"])["state"] in ("queued", "running"):
        time.sleep(0.2)
    assert {m["id"] for m in c.get("/v1/machines")} == {m["id"] for m in machines.values()}
    # The password is nowhere in the database in clear.
    if (svc.state / "vmdr.db").exists():
        db = (svc.state / "vmdr.db").read_bytes() + (svc.state / "vmdr.db-wal").read_bytes()
        assert creds["password"].encode() not in db
    else:
        import sqlalchemy

        engine = sqlalchemy.create_engine(svc.args[1])
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT * FROM vcenters")).all()
        engine.dispose()
        assert rows and all(creds["password"] not in repr(tuple(r)) for r in rows)


def test_bad_input_is_4xx_problem_details(server: tuple[Service, ServiceClient]) -> None:
    svc, c = server
    cases = [
        ("/v1/sites", {"name": "x", "role": "moon"}, 422, "VMDR-E0001"),
        ("/v1/sites", {"name": "../etc", "role": "primary"}, 422, "VMDR-E0001"),
        ("/v1/sites", {"name": "x", "role": "primary", "evil": 1}, 422, "VMDR-E0001"),
        (
            "/v1/vcenters",
            {"site": "nope", "name": "v", "url": "https://h", "user": "u", "password": "p"},
            404,
            "VMDR-E0540",
        ),
        ("/v1/vcenters/nope/discover", None, 404, "VMDR-E0540"),
    ]
    for path, body, status, code in cases:
        with pytest.raises(RemoteError) as err:
            c.post(path, body)
        assert (err.value.status, err.value.remote_code) == (status, code), path
    c.post("/v1/sites", {"name": "dup", "role": "primary"})
    with pytest.raises(RemoteError) as err:
        c.post("/v1/sites", {"name": "dup", "role": "recovery"})
    assert err.value.status == 409 and err.value.remote_code == "VMDR-E0541"
    with svc.client("wrong") as bad, pytest.raises(RemoteError) as err:
        bad.get("/v1/machines")
    assert err.value.status == 401
    spec = c.get("/openapi.json")
    assert {"/v1/machines", "/v1/vcenters/{ident}/discover", "/v1/jobs/{ident}"} <= set(
        spec["paths"]
    )


def test_a_vanished_vm_is_marked_not_deleted(
    server: tuple[Service, ServiceClient], lab: Lab
) -> None:
    from vmdr.lab.lab import vcenter_endpoint
    from vmdr.lab.populate import vmware_disk_uuid
    from vmdr.providers.vsphere.control import NewDisk, create_vm, delete_vm
    from vmdr.providers.vsphere.session import session

    _, c = server
    vc = add_lab_vcenter(c, lab)

    def discover() -> dict[str, Any]:
        job = c.post(f"/v1/vcenters/{vc['id']}/discover")
        while (status := c.get(job["url"]))["state"] in ("queued", "running"):
            time.sleep(0.1)
        assert status["state"] == "succeeded", status
        return {m["name"]: m for m in c.get("/v1/machines")}

    with session(vcenter_endpoint(lab.directory)) as si:
        vm = create_vm(
            si, "short-lived", "esx-01", "vmfs-01", [NewDisk(1 << 20, vmware_disk_uuid())]
        )
        try:
            assert discover()["short-lived"]["vanished_at"] is None
        finally:
            delete_vm(si, vm)
    after = discover()
    assert after["short-lived"]["vanished_at"] is not None  # still there, marked
    assert after["web-01"]["vanished_at"] is None


def test_an_endpoint_of_the_wrong_kind_is_refused_by_discovery(
    server: tuple[Service, ServiceClient], lab: Lab
) -> None:
    """The lab's standalone ESX host added as a vCenter: discovery fails with
    the code that says so, and stores nothing."""
    _, c = server
    state = lab.state()
    assert state is not None
    esx, creds = state.service("esx"), lab.credentials()["esx"]
    site = c.post("/v1/sites", {"name": "branch", "role": "primary"})
    access = {"url": esx.url, "user": creds["user"], "password": creds["password"],
              "ca_pem": Path(esx.details["ca"]).read_text()}  # fmt: skip
    wrong = c.post("/v1/vcenters", {"site": site["id"], "name": "esx-as-vc", **access})
    job = c.post(f"/v1/vcenters/{wrong['id']}/discover")
    while (status := c.get(job["url"]))["state"] in ("queued", "running"):
        time.sleep(0.1)
    assert status["state"] == "failed" and status["error"]["code"] == "VMDR-E0605", status
    assert '"kind": "esx"' in status["error"]["fix"]
    assert c.get("/v1/machines") == [] and c.get("/v1/hosts") == []
    # The fix the error gives works.
    c.request("PATCH", f"/v1/vcenters/{wrong['id']}", json={"kind": "esx"})
    job = c.post(f"/v1/vcenters/{wrong['id']}/discover")
    while (status := c.get(job["url"]))["state"] in ("queued", "running"):
        time.sleep(0.1)
    assert status["state"] == "succeeded", status
    assert [m["name"] for m in c.get("/v1/machines")] == ["branch-01"]
    (disk,) = c.get("/v1/machines")[0]["disks"]
    assert (disk["address"], disk["controller"], disk["backing"]) == ("scsi0:0", "pvscsi", "flat")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_api_replica_without_a_worker_and_a_separate_worker_run_a_job(
    tmp_path: Path, database_url: str, lab: Lab
) -> None:
    """PostgreSQL: the API only queues; ``vmdr serve worker`` (here sharing the
    API's state folder for the credentials key) runs the discovery."""
    import os
    import signal
    import subprocess
    import sys

    svc = Service("configuration-server", ["--database", database_url, "--no-worker"],
                  tmp_path / "cs", tmp_path / "pki")  # fmt: skip
    svc.start()
    worker = None
    try:
        token = (tmp_path / "cs" / "admin.token").read_text()
        with svc.client(token) as c:
            vc = add_lab_vcenter(c, lab)
            answer = c.post(f"/v1/vcenters/{vc['id']}/discover")
            time.sleep(3)
            assert c.get(answer["url"])["state"] == "queued"  # nobody runs jobs yet
            worker = subprocess.Popen(
                [sys.executable, "-m", "vmdr", "serve", "worker", "--database", database_url,
                 "--state-dir", str(tmp_path / "cs")],
                stdout=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            assert worker.stdout is not None
            assert '"service": "worker"' in worker.stdout.readline()
            deadline = time.monotonic() + 60
            while (job := c.get(answer["url"]))["state"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["state"] == "succeeded", job
            assert {m["name"] for m in c.get("/v1/machines")} >= {"web-01", "db-01"}
    finally:
        svc.stop()
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            assert worker.stdout is not None
            worker.stdout.close()


def test_a_clean_stop_ends_the_lease_and_a_restart_takes_its_work_up_at_once(
    server: tuple[Service, ServiceClient], tmp_path: Path, database_url: str
) -> None:
    """SIGTERM: the configuration server ends its worker lease before it exits
    (heartbeat at the epoch, so that no one waits out the 30 s lease), and
    started again on the same state folder it runs jobs at once."""
    from vmdr.control.db.engine import open_database, session_factory
    from vmdr.control.db.models import Worker

    svc, _ = server
    ident = (tmp_path / "cs" / "worker.id").read_text()
    svc.stop()
    url = database_url if not database_url.startswith("sqlite") else (
        f"sqlite:///{tmp_path / 'cs' / 'vmdr.db'}")  # fmt: skip
    engine = open_database(url)
    try:
        with session_factory(engine)() as s:
            row = s.get(Worker, ident)
            assert row is not None and row.heartbeat_at.year == 1970
    finally:
        engine.dispose()
    svc.start()
    token = (tmp_path / "cs" / "admin.token").read_text()
    with svc.client(token) as again:
        site = again.post("/v1/sites", {"name": "after-restart", "role": "primary"})
        vc = again.post("/v1/vcenters", {
            "site": site["id"], "name": "nowhere", "url": "https://127.0.0.1:9/sdk",
            "user": "u", "password": "p", "fingerprint": "ab" * 32,  # pinned: not asked now
        })  # fmt: skip
        job = again.post(f"/v1/vcenters/{vc['id']}/discover")
        deadline = time.monotonic() + 20  # well inside the 30 s lease
        while (done := again.get(job["url"]))["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
        assert done["state"] == "failed" and done["error"]["code"].startswith("VMDR-E"), done


def test_a_vcenter_without_its_ca_is_added_only_with_a_confirmed_fingerprint(
    server: tuple[Service, ServiceClient], lab: Lab
) -> None:
    """No CA, no fingerprint: refused with the fingerprint to compare (the
    password went nowhere). Trust on first use, asked for: the fingerprint
    is pinned and discovery works. A wrong pin: discovery fails with E0612."""
    _, c = server
    state = lab.state()
    assert state is not None
    vcenter, creds = state.service("vcenter"), lab.credentials()["vcenter"]
    site = c.post("/v1/sites", {"name": "on-premises", "role": "primary"})
    access = {"site": site["id"], "url": vcenter.url, "user": creds["user"],
              "password": creds["password"]}  # fmt: skip
    with pytest.raises(RemoteError) as err:
        c.post("/v1/vcenters", {"name": "vc-unchecked", **access})
    assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0611")
    assert c.get("/v1/vcenters") == []
    vc = c.post("/v1/vcenters", {"name": "vc-pinned", "trust_on_first_use": True, **access})
    assert vc["trust"] == "fingerprint" and len(vc["fingerprint"]) == 64
    assert vc["fingerprint"] in err.value.message  # the one it showed
    job = c.post(f"/v1/vcenters/{vc['id']}/discover")
    while (status := c.get(job["url"]))["state"] in ("queued", "running"):
        time.sleep(0.1)
    assert status["state"] == "succeeded", status
    c.request("PATCH", f"/v1/vcenters/{vc['id']}", json={"fingerprint": "ab" * 32})
    job = c.post(f"/v1/vcenters/{vc['id']}/discover")
    while (status := c.get(job["url"]))["state"] in ("queued", "running"):
        time.sleep(0.1)
    assert status["state"] == "failed" and status["error"]["code"] == "VMDR-E0612", status


def test_a_service_token_reaches_only_its_own_routes(
    server: tuple[Service, ServiceClient],
) -> None:
    """Every route of the OpenAPI document refuses a process server's token
    (403, VMDR-E0357, before the request is read) except its heartbeat: it
    cannot download a backup, read a backup key, change a vCenter or start a
    failover. The administrator's token is not refused."""
    svc, admin = server
    passphrase = (svc.state / "registration-passphrase").read_text().strip()
    with ServiceClient("cs", svc.url, svc.ca_file) as anon:
        role = anon.post("/v1/roles/register", {"kind": "process-server", "name": "ps-cloud",
                                                "url": "https://127.0.0.1:9",
                                                "passphrase": passphrase})  # fmt: skip
    document = admin.get("/openapi.json")
    open_routes = {("POST", "/v1/roles/register"), ("POST", "/v1/register"), ("GET", "/healthz"),
                   ("POST", "/v1/login")}  # fmt: skip
    own = {("POST", "/v1/roles/heartbeat")}
    walked = 0
    with ServiceClient("cs", svc.url, svc.ca_file, role["token"]) as ps:
        for path, methods in document["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x1", path)
            for method in methods:
                key = (method.upper(), path)
                if key in open_routes or key in own:
                    continue
                with pytest.raises(RemoteError) as err:
                    ps.request(method.upper(), concrete)
                assert (err.value.status, err.value.remote_code) == (403, "VMDR-E0357"), key
                walked += 1
        assert ps.post("/v1/roles/heartbeat", {"health": {}}) == {"ok": True}
    assert walked >= 50  # the whole API (55 routes today), not a sample
    assert len(admin.get("/v1/server/backup-key")["key"]) == 64  # the administrator may


def test_a_service_serves_the_operators_own_certificate(tmp_path: Path) -> None:
    """`--cert/--key`: the service presents the operator's certificate (from
    their own CA), not one from the private CA in its state folder."""
    from vmdr.transport.tls import ensure_ca, issue_server_cert

    theirs = ensure_ca(tmp_path / "company-ca", "Company CA")
    pair = issue_server_cert(theirs, tmp_path / "company-ca", "cs", ["127.0.0.1"])
    svc = Service("configuration-server", ["--cert", str(pair.cert), "--key", str(pair.key)],
                  tmp_path / "cs", tmp_path / "pki")  # fmt: skip
    svc.start()
    try:
        token = (tmp_path / "cs" / "admin.token").read_text()
        with ServiceClient("cs", svc.url, theirs.cert, token) as c:
            assert c.get("/v1/sites") == []
        private = ServiceClient("cs", svc.url, svc.ca_file, token)
        with private, pytest.raises(ServiceUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            private.get("/v1/sites")  # the private CA does not vouch for it
    finally:
        svc.stop()
    half = Service("configuration-server", ["--cert", str(pair.cert)], tmp_path / "cs2",
                   tmp_path / "pki")  # fmt: skip
    with pytest.raises(RuntimeError, match="--cert and --key go together"):
        half.start()
