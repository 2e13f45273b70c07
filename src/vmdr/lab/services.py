"""The lab's three real components and how each is started and found ready.

- ``vcenter``: the vCenter simulator built from Debian's govmomi, TLS with a
  certificate from the lab CA, one user and password (others are refused).
- ``azurite``: Azure Blob storage emulator over HTTPS, disk persistence under the
  lab folder, a storage account with a key made for this lab (not the public
  well-known development key), ``--disableTelemetry``.
- ``esx``: a second simulator answering as a standalone ESX host (HostAgent
  API, not managed by the vCenter), with its own local datastore and login: the
  seeds' "ESX host without vCenter", added to the configuration server by
  address and credentials.
- ``dns``: BIND 9 serving the application zone; updates only with the lab's TSIG key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vmdr.lab import process, tools
from vmdr.lab.state import ServiceRecord
from vmdr.model.errors import ServiceFailed
from vmdr.providers.azure.accounts import StorageAccount, write_accounts_file
from vmdr.transport.tls import CertPair, issue_server_cert

HOST = "127.0.0.1"
DNS_ZONE = "apps.vmdr.test"
TSIG_KEY_NAME = "vmdr-lab-key"
STORAGE_ACCOUNT = "vmdrlab"
VCENTER_USER = "administrator@vsphere.local"
STORAGE_ACCOUNTS_FILE = "storage-accounts.json"


@dataclass
class LabContext:
    directory: Path
    ca: CertPair
    credentials: dict[str, Any]
    started: dict[str, ServiceRecord] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    def cert_for(self, name: str) -> CertPair:
        return issue_server_cert(self.ca, self.directory / "pki", name)


class Service(Protocol):
    name: str

    def check_dependencies(self) -> None: ...

    def start(self, ctx: LabContext, port: int) -> ServiceRecord: ...


def service_failed(name: str, proc_log: Path, detail: str) -> ServiceFailed:
    tail = ""
    if proc_log.exists():
        lines = proc_log.read_text(errors="replace").strip().splitlines()[-5:]
        tail = " | ".join(lines)
    return ServiceFailed(
        service=name, detail=f"{detail}{': ' + tail if tail else ''}", log=str(proc_log)
    )


ESX_HOST_NAME = "esx-branch-01"
ESX_DATASTORE = "branch-local"


class VCenterService:
    """The vCenter simulator; with ``esx`` set, a standalone ESX host instead."""

    def __init__(self, name: str = "vcenter", esx: str | None = None, datastores: str = "") -> None:
        self.name, self.esx, self.datastores = name, esx, datastores

    def check_dependencies(self) -> None:
        tools.vcsim_binary()

    def start(self, ctx: LabContext, port: int) -> ServiceRecord:
        user = "root" if self.esx else VCENTER_USER
        creds = ctx.credentials.setdefault(
            self.name, {"user": user, "password": secrets.token_urlsafe(18)}
        )
        cert = ctx.cert_for(self.name)
        suffix = "" if self.name == "vcenter" else f"-{self.name}"
        root = ctx.directory / f"datastores{suffix}"
        # The simulator keeps no inventory across restarts; neither may the disks.
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        # What each VM's Linux guest would see under /dev/disk/by-id (the
        # appliances read their own VM's folder); rebuilt with the inventory.
        by_id = ctx.directory / f"by-id{suffix}"
        shutil.rmtree(by_id, ignore_errors=True)
        work = ctx.directory / ("vcsim" if self.name == "vcenter" else f"vcsim-{self.name}")
        work.mkdir(exist_ok=True)
        out = work / "vcsim.out"
        out.unlink(missing_ok=True)
        log = ctx.logs / f"{self.name}.log"
        argv = [
            str(tools.vcsim_binary()),
            "-l", f"{HOST}:{port}",
            "-tls", "-cert", str(cert.cert), "-key", str(cert.key),
            "-user", creds["user"], "-pass", creds["password"],
            "-cluster-hosts", "2", "-standalone-hosts", "1",
            "-ds-root", str(root), "-byid-root", str(by_id),
        ]  # fmt: skip
        if self.esx:
            argv += ["-esx", self.esx]
        if self.datastores:
            argv += ["-datastores", self.datastores]
        env = dict(os.environ, TMPDIR=str(work))
        record = process.spawn(argv, log, env=env, stdout_path=out)
        why = process.wait_until(lambda: out.exists() and out.stat().st_size > 0, record, 30)
        if why:
            process.stop(record)
            raise service_failed(self.name, log, why)
        info = json.loads(out.read_text().splitlines()[0])
        return ServiceRecord(
            name=self.name,
            process=record,
            host=HOST,
            port=port,
            url=info["url"],
            log=str(log),
            details={"topology": info, "ca": str(ctx.ca.cert)},
        )


class AzuriteService:
    name = "azurite"

    def check_dependencies(self) -> None:
        tools.azurite_binary()

    def start(self, ctx: LabContext, port: int) -> ServiceRecord:
        creds = ctx.credentials.setdefault(
            "azurite",
            {
                "account": STORAGE_ACCOUNT,
                "key": base64.b64encode(secrets.token_bytes(64)).decode(),
            },
        )
        cert = ctx.cert_for("azurite")
        location = ctx.directory / "azurite"
        location.mkdir(exist_ok=True)
        log = ctx.logs / "azurite.log"
        argv = [
            str(tools.azurite_binary()),
            "--blobHost", HOST, "--blobPort", str(port),
            "--location", str(location),
            "--cert", str(cert.cert), "--key", str(cert.key),
            "--disableTelemetry", "--skipApiVersionCheck",
        ]  # fmt: skip
        env = dict(os.environ, AZURITE_ACCOUNTS=f"{creds['account']}:{creds['key']}")
        record = process.spawn(argv, log, env=env)
        why = process.wait_until(lambda: process.port_open(HOST, port), record, 60)
        if why:
            process.stop(record)
            raise service_failed(self.name, log, why)
        url = f"https://{HOST}:{port}/{creds['account']}"
        # pageblob:// URLs find the account's key here (VMDR_STORAGE_ACCOUNTS).
        write_accounts_file(
            ctx.directory / STORAGE_ACCOUNTS_FILE,
            [StorageAccount(creds["account"], url, creds["key"], str(ctx.ca.cert))],
        )
        return ServiceRecord(
            name=self.name,
            process=record,
            host=HOST,
            port=port,
            url=url,
            log=str(log),
            details={"account": creds["account"], "ca": str(ctx.ca.cert)},
        )


def azurite_connection_string(record: ServiceRecord, creds: dict[str, Any]) -> str:
    return (
        "DefaultEndpointsProtocol=https;"
        f"AccountName={creds['account']};AccountKey={creds['key']};"
        f"BlobEndpoint={record.url};"
    )


ZONE_TEMPLATE = """$TTL 60
@        IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 60 60 600 60 )
         IN NS  ns1.{zone}.
ns1      IN A   127.0.0.1
web-01   IN A   192.0.2.11
db-01    IN A   192.0.2.12
app-01   IN A   192.0.2.13
"""

NAMED_CONF_TEMPLATE = """include "{key_file}";
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ 127.0.0.1; }};
    allow-transfer {{ key "{key_name}"; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
logging {{
    channel stderr_log {{ stderr; severity info; print-time yes; }};
    category default {{ stderr_log; }};
    category update {{ stderr_log; }};
    category update-security {{ stderr_log; }};
}};
zone "{zone}" {{
    type primary;
    file "{dir}/{zone}.zone";
    allow-update {{ key "{key_name}"; }};
}};
"""


class DnsService:
    name = "dns"

    def check_dependencies(self) -> None:
        tools.named_binary()

    def start(self, ctx: LabContext, port: int) -> ServiceRecord:
        creds = ctx.credentials.setdefault(
            "dns",
            {
                "key_name": TSIG_KEY_NAME,
                "algorithm": "hmac-sha256",
                "secret": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        )
        work = ctx.directory / "dns"
        work.mkdir(exist_ok=True)
        key_file = work / "tsig.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f'key "{creds["key_name"]}" {{\n'
                f"    algorithm {creds['algorithm']};\n"
                f'    secret "{creds["secret"]}";\n}};\n'
            )
        zone_file = work / f"{DNS_ZONE}.zone"
        if not zone_file.exists():  # keep records changed by earlier runs
            zone_file.write_text(ZONE_TEMPLATE.format(zone=DNS_ZONE))
        conf = work / "named.conf"
        conf.write_text(
            NAMED_CONF_TEMPLATE.format(
                key_file=key_file, dir=work, port=port, zone=DNS_ZONE, key_name=creds["key_name"]
            )
        )
        log = ctx.logs / "dns.log"
        argv = [str(tools.named_binary()), "-g", "-c", str(conf)]
        record = process.spawn(argv, log)
        why = process.wait_until(lambda: process.port_open(HOST, port), record, 20)
        if why:
            process.stop(record)
            raise service_failed(self.name, log, why)
        return ServiceRecord(
            name=self.name,
            process=record,
            host=HOST,
            port=port,
            url=f"dns://{HOST}:{port}/{DNS_ZONE}",
            log=str(log),
            details={"zone": DNS_ZONE, "key_name": creds["key_name"]},
        )


SITE_SERVICES: tuple[Service, ...] = (
    VCenterService(),
    VCenterService("esx", esx=ESX_HOST_NAME, datastores=f"{ESX_DATASTORE}:VMFS:all"),
    AzuriteService(),
    DnsService(),
)
