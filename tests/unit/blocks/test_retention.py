"""The retention journal: every recovery point comes back exactly, on real files."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmdr.blocks.backend import Backend
from vmdr.blocks.retention import RetentionStore
from vmdr.blocks.retention_errors import (
    BadDiskId,
    NoRecoveryPoint,
    PointExpired,
    RetentionFull,
    RetentionMissing,
)
from vmdr.blocks.urls import open_backend

KiB, MiB = 1 << 10, 1 << 20
SIZE = 4 * MiB


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def disk(path: Path, size: int = SIZE) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(MiB)
        f.write(os.urandom(MiB))
    return path


def write(journal_cs: object, target: Backend, offset: int, data: bytes) -> None:
    journal_cs.capture(target, offset, len(data))  # type: ignore[attr-defined]
    target.write(offset, data)


def apply_changes(store: RetentionStore, path: Path, rounds: int, seed: int) -> dict[int, str]:
    """Change sets of random writes (and zeroing); the true digest after each."""
    rnd = random.Random(seed)
    journal = store.disk("d1")
    truth = {}
    with open_backend(f"file://{path}", "rw") as target:
        cs = journal.begin("initial", initial=True)
        truth[cs.commit(1000.0, kind="initial").seq] = digest(path)
        for n in range(rounds):
            cs = journal.begin(f"cs-{n}")
            for _ in range(rnd.randrange(1, 8)):
                off = rnd.randrange(0, SIZE - 300 * KiB)
                if rnd.random() < 0.2:
                    cs.capture(target, off, 200 * KiB)
                    target.zero(off, 200 * KiB)
                else:
                    write(cs, target, off, rnd.randbytes(rnd.randrange(1, 300 * KiB)))
            target.flush()
            truth[cs.commit(1001.0 + n, tag=f"t{n}").seq] = digest(path)
    return truth


@pytest.fixture
def store(tmp_path: Path) -> RetentionStore:
    (tmp_path / "retention").mkdir()
    return RetentionStore(tmp_path / "retention", min_free_bytes=MiB)


def materialised(store: RetentionStore, src: Path, out: Path, spec: str | float) -> str:
    journal = store.disk("d1")
    point = journal.find(spec, now=2000.0)
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(src.stat().st_size)
    with open_backend(f"file://{src}") as cur, open_backend(f"file://{out}", "rw") as o:
        journal.materialise(cur, point, o)
    return digest(out)


def test_every_point_materialises_exactly(store: RetentionStore, tmp_path: Path) -> None:
    src = disk(tmp_path / "disk.img")
    truth = apply_changes(store, src, rounds=6, seed=1)
    before = digest(src)
    journal = store.disk("d1")
    for point in journal.points():
        got = materialised(store, src, tmp_path / "out.img", f"tag:{point.tag}" if point.tag
                           else point.time)  # fmt: skip
        assert got == truth[point.seq], point
    assert digest(src) == before  # materialising changed nothing
    assert materialised(store, src, tmp_path / "out.img", "latest") == before
    assert materialised(store, src, tmp_path / "out.img", "latest-tagged") == before
    assert materialised(store, src, tmp_path / "out.img", 1003.5) == truth[4]


def test_revert_in_place_drops_newer_points(store: RetentionStore, tmp_path: Path) -> None:
    src = disk(tmp_path / "disk.img")
    truth = apply_changes(store, src, rounds=5, seed=2)
    journal = store.disk("d1")
    with open_backend(f"file://{src}", "rw") as cur:
        journal.revert(cur, journal.find("tag:t1"))
    assert digest(src) == truth[3]
    assert [p.tag for p in journal.points()] == [None, "t0", "t1"]
    assert not (journal.folder / f"{4:012d}.undo").exists()


def test_capture_twice_saves_once(store: RetentionStore, tmp_path: Path) -> None:
    src = disk(tmp_path / "disk.img")
    journal = store.disk("d1")
    with open_backend(f"file://{src}", "rw") as target:
        journal.begin("initial", initial=True).commit(1.0)
        cs = journal.begin("cs-1")
        cs.capture(target, MiB, 512 * KiB)
        size = journal.undo_path(cs.seq).stat().st_size
        cs.capture(target, MiB, 512 * KiB)
        cs.capture(target, MiB + 100 * KiB, 100 * KiB)
        assert journal.undo_path(cs.seq).stat().st_size == size
        cs.capture(target, MiB, 513 * KiB)  # one more KiB: only that is added
        assert 0 < journal.undo_path(cs.seq).stat().st_size - size < 2 * KiB


def test_initial_change_set_records_nothing(store: RetentionStore, tmp_path: Path) -> None:
    src = disk(tmp_path / "disk.img")
    journal = store.disk("d1")
    with open_backend(f"file://{src}", "rw") as target:
        cs = journal.begin("initial", initial=True)
        cs.capture(target, 0, SIZE)
        assert journal.undo_path(cs.seq).stat().st_size == 0


def test_crash_with_torn_record_then_resume_is_exact(store: RetentionStore, tmp_path: Path) -> None:
    src = disk(tmp_path / "disk.img")
    journal = store.disk("d1")
    with open_backend(f"file://{src}", "rw") as target:
        journal.begin("initial", initial=True).commit(1.0)
        before = digest(src)
        cs = journal.begin("cs-1")
        write(cs, target, 0, b"A" * 100_000)
        write(cs, target, 2 * MiB, b"B" * 100_000)
        target.flush()
        undo = journal.undo_path(cs.seq)
        # Kill -9 while the third record was being appended: its tail is lost,
        # and so its write never happened.
        cs.undo.close()
        with open(undo, "ab") as f:
            f.write(b"UNDO" + b"\x01" * 20)
        # The master target restarts and the sender resends every run.
        cs = journal.begin("cs-1")
        assert cs.undo.captured.total() == 200_000
        write(cs, target, 0, b"A" * 100_000)
        write(cs, target, 2 * MiB, b"B" * 100_000)
        write(cs, target, 3 * MiB, b"C" * 100_000)
        target.flush()
        cs.commit(2.0)
    out = tmp_path / "out.img"
    with open(out, "wb") as f:
        f.truncate(SIZE)
    with open_backend(f"file://{src}") as cur, open_backend(f"file://{out}", "rw") as o:
        journal.materialise(cur, journal.points()[0], o)
    assert digest(out) == before


def test_open_change_set_is_undone_by_materialise(store: RetentionStore, tmp_path: Path) -> None:
    src = disk(tmp_path / "disk.img")
    journal = store.disk("d1")
    with open_backend(f"file://{src}", "rw") as target:
        journal.begin("initial", initial=True).commit(1.0)
        before = digest(src)
        cs = journal.begin("cs-1")
        write(cs, target, 0, os.urandom(300_000))  # half applied, not committed
    assert materialised(store, src, tmp_path / "out.img", "latest") == before


def test_prune_keeps_what_the_oldest_kept_point_needs(
    store: RetentionStore, tmp_path: Path
) -> None:
    store.window = timedelta(seconds=2.5)
    src = disk(tmp_path / "disk.img")
    truth = apply_changes(store, src, rounds=6, seed=3)  # points at 1000, 1001 .. 1006
    used = store.used_bytes()
    freed = store.prune(now=1006.0)
    assert freed > 0 and store.used_bytes() < used
    journal = store.disk("d1")
    kept = journal.points()
    assert [p.time for p in kept] == [1004.0, 1005.0, 1006.0]
    for point in kept:
        assert materialised(store, src, tmp_path / "out.img", point.time) == truth[point.seq]
    with pytest.raises(PointExpired) as err:
        journal.find(1001.0, now=1006.0)
    assert err.value.code == "VMDR-E0404"
    assert store.prune(now=10_000.0) >= 0
    assert len(journal.points()) == 1  # the newest point always stays


def test_find_errors(store: RetentionStore) -> None:
    journal = store.disk("d1")
    with pytest.raises(NoRecoveryPoint) as err:
        journal.find("latest")
    assert err.value.code == "VMDR-E0403"


def test_missing_and_full(tmp_path: Path) -> None:
    with pytest.raises(RetentionMissing) as err:
        RetentionStore(tmp_path / "nope").check_ready()
    assert err.value.code == "VMDR-E0401"
    (tmp_path / "r").mkdir()
    with pytest.raises(RetentionFull) as err2:
        RetentionStore(tmp_path / "r", min_free_bytes=1 << 60).check_ready()
    assert err2.value.code == "VMDR-E0402"
    store = RetentionStore(tmp_path / "r", quota_bytes=8 * KiB, min_free_bytes=0)
    store.check_ready()
    (tmp_path / "r" / "d1").mkdir()
    (tmp_path / "r" / "d1" / "x.undo").write_bytes(os.urandom(64 * KiB))
    with pytest.raises(RetentionFull):
        store.check_ready()
    assert store.usage()["ready"] is False


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 129])
def test_bad_disk_ids(store: RetentionStore, bad: str) -> None:
    with pytest.raises(BadDiskId):
        store.disk(bad)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_random_histories(seed: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ret").mkdir()
        store = RetentionStore(root / "ret", min_free_bytes=0)
        src = disk(root / "disk.img")
        truth = apply_changes(store, src, rounds=3, seed=seed)
        for point in store.disk("d1").points():
            got = materialised(store, src, root / "out.img", point.time)
            assert got == truth[point.seq]


def test_a_retention_drive_that_fills_mid_change_set_loses_no_point(
    small_drive: Callable[[int], Path], tmp_path: Path
) -> None:
    """The drive fills while undo records are written: the capture that did
    not fit is refused (VMDR-E0402) and its range left unwritten; once room
    is made the change set goes on; every point materialises exactly."""
    drive = small_drive(3 * MiB)
    store = RetentionStore(drive, min_free_bytes=0)  # the drive itself runs out
    src = disk(tmp_path / "disk.img")
    journal = store.disk("d1")
    truth, rnd = {}, random.Random(7)
    with open_backend(f"file://{src}", "rw") as target:
        truth[journal.begin("initial", initial=True).commit(1.0).seq] = digest(src)
        cs = journal.begin("cs-1")
        write(cs, target, 0, rnd.randbytes(300 * KiB))
        target.flush()
        truth[cs.commit(2.0, tag="t1").seq] = digest(src)
        filler = drive / "filler"
        filler.write_bytes(b"\xff" * (drive_free(drive) - 200 * KiB))  # the drive is nearly full
        cs = journal.begin("cs-2")
        refused = 0
        for n in range(8):  # 4 ranges of random old bytes (256 KiB each), then 4 of zeros
            offset = MiB + n * 256 * KiB
            try:
                write(cs, target, offset, bytes(256 * KiB))
            except RetentionFull as exc:
                assert exc.code == "VMDR-E0402"
                refused += 1
        assert refused == 4  # none of the random ranges fit; a zero range needs no payload
        filler.unlink()  # room again: the change set goes on where it stopped
        for n in range(8):
            write(cs, target, MiB + n * 256 * KiB, bytes(256 * KiB))
        write(cs, target, 3 * MiB, rnd.randbytes(100 * KiB))
        target.flush()
        truth[cs.commit(3.0, tag="t2").seq] = digest(src)
    for seq, want in truth.items():
        assert materialised(store, src, tmp_path / "out.img", float(seq)) == want, seq


def drive_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_an_initial_change_set_on_a_disk_with_points_keeps_its_undo(
    store: RetentionStore, tmp_path: Path
) -> None:
    """A sender that says "initial" again (a re-seed) must not make the
    earlier points materialise with the new data."""
    src = disk(tmp_path / "disk.img")
    journal = store.disk("d1")
    with open_backend(f"file://{src}", "rw") as target:
        journal.begin("initial", initial=True).commit(1.0)
        before = digest(src)
        cs = journal.begin("re-seed", initial=True)
        write(cs, target, MiB, bytes(MiB))
        target.flush()
        cs.commit(2.0)
    assert materialised(store, src, tmp_path / "out.img", 1.0) == before
