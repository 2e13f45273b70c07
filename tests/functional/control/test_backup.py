"""Backup while the server runs, restore onto a fresh server (across SQLite
and PostgreSQL), refusals of damaged, newer and non-empty cases."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from vmdr.control.backup import (
    SIGNATURE,
    BackupCorrupt,
    BackupNotAuthentic,
    BackupTooNew,
    RestoreTargetNotEmpty,
    backup,
    restore,
)
from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import (
    AuditEntry,
    Disk,
    Job,
    JobEvent,
    Machine,
    ProtectedItem,
    Site,
    VCenter,
)
from vmdr.control.secrets import SecretBox, SecretUnreadable

TiB = 1 << 40
KEY = b"ab" * 32  # a backup key, as <state>/backup.key holds one


def populate(engine: Engine, box: SecretBox) -> str:
    with session_factory(engine).begin() as s:
        site = Site(name="on-premises", role="primary")
        s.add(site)
        s.flush()
        s.add(VCenter(site_id=site.id, name="vc-01", url="https://vc", user="admin",
                      secret_enc=box.seal("s3cret!")))  # fmt: skip
        vm = Machine(name="web-01", enable_uuid=True)
        vm.disks = [Disk(unit=0, capacity=2 * TiB, path="[vmfs-01] web-01/web-01.vmdk")]
        s.add(vm)
        s.flush()
        item = ProtectedItem(machine_id=vm.id, state="Protected", active_site="primary",
                             direction="primaryToRecovery")  # fmt: skip
        s.add(item)
        s.flush()
        job = Job(kind="reprotect", item_id=item.id, state="succeeded", step=3)
        s.add(job)
        s.flush()
        s.add(JobEvent(job_id=job.id, step="sync", kind="end", bytes=5 * TiB))
        return item.id


def test_backup_then_restore_on_a_fresh_server(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = open_database(database_url)
    box = SecretBox.in_folder(tmp_path / "old-server")
    item_id = populate(source, box)
    archive = tmp_path / "cs.backup"
    manifest = backup(source, archive, signing_key=KEY, key_file=box.path)
    assert manifest["tables"]["machines"]["rows"] == 1
    assert b"s3cret!" not in archive.read_bytes()
    # A fresh server elsewhere, on the other kind of database.
    if database_url.startswith("sqlite"):
        import sqlalchemy

        target_url: str = request.getfixturevalue("postgres_url")
        fresh = sqlalchemy.create_engine(target_url)
        with fresh.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        fresh.dispose()
    else:
        target_url = f"sqlite:///{tmp_path / 'new.db'}"
    target = open_database(target_url)
    restore(target, archive, signing_key=KEY, key_file=tmp_path / "new-server" / "secret.key")
    new_box = SecretBox.in_folder(tmp_path / "new-server")
    with session_factory(target)() as s:
        vc = s.scalars(select(VCenter)).one()
        assert new_box.open(vc.secret_enc) == "s3cret!"
        item = s.get(ProtectedItem, item_id)
        assert item is not None and item.state == "Protected"
        assert s.scalars(select(Disk)).one().capacity == 2 * TiB
        assert s.scalars(select(JobEvent)).one().bytes == 5 * TiB
        job = s.scalars(select(Job)).one()
        assert job.state == "succeeded"
    # The restored server keeps working: new rows get new ids (on PostgreSQL
    # the sequences were moved past the restored ids).
    with session_factory(target).begin() as s:
        s.add(JobEvent(job_id=job.id, step="after-restore", kind="start", bytes=0))
    with session_factory(target)() as s:
        assert len(s.scalars(select(JobEvent)).all()) == 2
    # Without the key, the credentials stay sealed.
    with pytest.raises(SecretUnreadable):
        SecretBox.in_folder(tmp_path / "stranger").open(vc.secret_enc)
    # Restoring twice onto the same server is refused: it holds data now.
    with pytest.raises(RestoreTargetNotEmpty) as err:
        restore(target, archive, signing_key=KEY)
    assert err.value.code == "VMDR-E0532"
    source.dispose()
    target.dispose()


def _rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members.update(change)
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_damaged_or_newer_backups_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    source = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    populate(source, SecretBox.in_folder(tmp_path))
    archive = tmp_path / "cs.backup"
    backup(source, archive, signing_key=KEY)
    with tarfile.open(archive, "r:gz") as tar:
        machines = tar.extractfile("tables/machines.jsonl").read()  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    target = open_database(f"sqlite:///{tmp_path / 'b.db'}")

    tampered = tmp_path / "tampered.backup"
    _rewrite(archive, tampered, {"tables/machines.jsonl": machines.replace(b"web-01", b"web-02")})
    with pytest.raises(BackupCorrupt) as err:
        restore(target, tampered, signing_key=KEY)
    assert err.value.code == "VMDR-E0530" and "machines" in err.value.message

    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(BackupCorrupt):
        restore(target, truncated, signing_key=KEY)
    # Cut at the very end, where only gzip's trailer and the tar's zero
    # padding live: every member still reads, but the file is not whole.
    for cut in (1, 8, 40):
        truncated.write_bytes(archive.read_bytes()[:-cut])
        with pytest.raises(BackupCorrupt):
            restore(target, truncated, signing_key=KEY)

    for change in ({"format": 99}, {"schema_revision": "9999"}):
        newer = tmp_path / "newer.backup"
        _with_manifest(archive, newer, manifest | change)
        with pytest.raises(BackupTooNew) as too_new:
            restore(target, newer, signing_key=KEY)
        assert too_new.value.code == "VMDR-E0531"
    with session_factory(target)() as s:
        assert s.scalars(select(Machine)).first() is None  # nothing was written
    source.dispose()
    target.dispose()


def signed_archive(tmp_path: Path) -> tuple[Engine, Path, dict[str, bytes]]:
    """A populated database, its backup signed with KEY, and the members."""
    source = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    populate(source, SecretBox.in_folder(tmp_path))
    archive = tmp_path / "cs.backup"
    backup(source, archive, signing_key=KEY)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    return source, archive, members


def _with_manifest(
    archive: Path, out: Path, manifest: object, key: bytes = KEY, **more: bytes
) -> None:
    """The archive with another manifest, checksummed and signed with ``key``."""
    import hashlib
    import hmac

    raw = json.dumps(manifest).encode()
    _rewrite(archive, out, {"manifest.json": raw,
                            "manifest.json.sha256": hashlib.sha256(raw).hexdigest().encode(),
                            SIGNATURE: hmac.new(key, raw, hashlib.sha256).hexdigest().encode(),
                            **more})  # fmt: skip


def test_malformed_manifests_and_rows_are_damage_not_a_crash(tmp_path: Path) -> None:
    """Each of these was a KeyError, TypeError or AttributeError (HTTP 500)."""
    import hashlib

    source, archive, members = signed_archive(tmp_path)
    manifest = json.loads(members["manifest.json"])
    target = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    bad = tmp_path / "bad.backup"
    manifests: list[object] = [
        [1, 2, 3],
        {k: v for k, v in manifest.items() if k != "tables"},
        manifest | {"tables": {"machines": {"rows": "many", "sha256": "x"}}},
        manifest | {"schema_revision": None},
        manifest | {"format": "1"},
    ]
    for broken in manifests:
        _with_manifest(archive, bad, broken)
        with pytest.raises(BackupCorrupt) as err:
            restore(target, bad, signing_key=KEY)
        assert err.value.code == "VMDR-E0530" and "manifest" in err.value.message, broken
    # Rows whose checksum holds (the manifest is not keyed) but that do not fit.
    rows = b'{"id": "m1", "name": {"$b64": 5}, "created_at": "not a date"}\n'
    tables = manifest["tables"] | {
        "machines": {"rows": 1, "sha256": hashlib.sha256(rows).hexdigest()}
    }
    _with_manifest(archive, bad, manifest | {"tables": tables}, **{"tables/machines.jsonl": rows})
    with pytest.raises(BackupCorrupt) as err:
        restore(target, bad, signing_key=KEY)
    assert err.value.code == "VMDR-E0530" and "machines" in err.value.message
    with session_factory(target)() as s:
        assert s.scalars(select(Machine)).first() is None  # nothing was written
    source.dispose()
    target.dispose()


def test_a_gzip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    """1 MiB of gzip that claims a 2 GiB table: refused from the tar header,
    with memory bounded (it used to be unpacked whole first: 2.2 GiB)."""
    import resource
    import zlib

    bomb = tmp_path / "bomb.backup"
    info = tarfile.TarInfo("tables/machines.jsonl")
    info.size = 2 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    with bomb.open("wb") as f:
        f.write(squeeze.compress(header))
        zeros = bytes(1 << 20)
        for _ in range(2048):
            f.write(squeeze.compress(zeros))
        f.write(squeeze.flush())
    assert bomb.stat().st_size < 4 << 20
    target = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BackupCorrupt) as err:
        restore(target, bomb, signing_key=KEY)
    assert err.value.code == "VMDR-E0530" and "unpacks to more than" in err.value.message
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) << 10
    assert grown < 200 << 20, grown
    target.dispose()


def test_a_forged_backup_is_refused_however_consistent_its_checksums(tmp_path: Path) -> None:
    """Someone who can write the archive changes a table and fixes every
    checksum (they are not keyed): without the backup key the signature does
    not match, and nothing is written. An archive from before signing needs
    the operator's explicit consent."""
    import hashlib

    source, archive, members = signed_archive(tmp_path)
    manifest = json.loads(members["manifest.json"])
    forged_rows = members["tables/machines.jsonl"].replace(b"web-01", b"evil-01")
    tables = manifest["tables"] | {"machines": {
        "rows": 1, "sha256": hashlib.sha256(forged_rows).hexdigest()}}  # fmt: skip
    forged = tmp_path / "forged.backup"
    _with_manifest(archive, forged, manifest | {"tables": tables}, key=b"cd" * 32,
                   **{"tables/machines.jsonl": forged_rows})  # fmt: skip
    target = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(BackupNotAuthentic) as err:
        restore(target, forged, signing_key=KEY)
    assert err.value.code == "VMDR-E0533" and "does not match" in err.value.message
    with pytest.raises(BackupNotAuthentic):  # no key given: no way to tell
        restore(target, archive, signing_key=None)
    unsigned = tmp_path / "unsigned.backup"
    with tarfile.open(unsigned, "w:gz") as tar:
        for name, data in members.items():
            if name != SIGNATURE:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupNotAuthentic) as err:
        restore(target, unsigned, signing_key=KEY)
    assert "no signature" in err.value.message
    with session_factory(target)() as s:
        assert s.scalars(select(Machine)).first() is None  # nothing was written
    restore(target, unsigned, signing_key=KEY, allow_unsigned=True)  # the operator's choice
    with session_factory(target)() as s:
        assert [m.name for m in s.scalars(select(Machine))] == ["web-01"]
    source.dispose()
    target.dispose()


def test_the_fresh_servers_own_audit_lines_are_kept_after_the_archives(tmp_path: Path) -> None:
    """A fresh server has audited what was asked of it (a refused restore,
    say): that does not make it "hold data", and its lines stay, after the
    restored server's."""
    source = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    populate(source, SecretBox.in_folder(tmp_path))
    with session_factory(source).begin() as s:
        s.add(AuditEntry(principal="admin", method="POST", path="/v1/sites", status=201))
    archive = tmp_path / "cs.backup"
    backup(source, archive, signing_key=KEY)
    target = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    with session_factory(target).begin() as s:
        s.add(AuditEntry(principal="admin", method="POST", path="/v1/server/restore", status=400))
    restore(target, archive, signing_key=KEY)
    with session_factory(target)() as s:
        lines = [(e.path, e.status) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert s.scalars(select(Machine)).first() is not None
    assert lines == [("/v1/sites", 201), ("/v1/server/restore", 400)]
    source.dispose()
    target.dispose()
