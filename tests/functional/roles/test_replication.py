"""Process server -> master target over loopback TLS, real processes, real files.

Every test checks the outcome a user cares about: the target disk's bytes
(read independently with plain file reads) equal the source's at the moment
that matters, whatever was killed or unreachable on the way.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from vmdr.lab.pair import Pair
from vmdr.transport.client import RemoteError

from ..blocks.helpers import random_image, same_bytes, sha256_of

MiB = 1 << 20
BS = 64 << 10


def start(pair: Pair, source: Path, repl: str = "r1", **kw: Any) -> None:
    body = pair.replication(repl, str(source), f"{repl}/{repl}-flat.vmdk", interval=3600, **kw)
    with pair.ps_client() as c:
        c.post("/v1/replications", body)


def target_of(pair: Pair, repl: str = "r1") -> Path:
    return pair.ds / repl / f"{repl}-flat.vmdk"


def initial_done(status: dict[str, Any]) -> bool:
    return bool(status.get("initial_done"))


def write_and_feed(
    pair: Pair, source: Path, writes: list[tuple[int, bytes]], repl: str = "r1"
) -> None:
    """What the source side's agent does: write, then feed the dirty extents."""
    with open(source, "r+b") as f:
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    with pair.ps_client() as c:
        c.post(f"/v1/replications/{repl}/dirty", {"extents": [[o, len(d)] for o, d in writes]})


def point(pair: Pair, tag: str, repl: str = "r1", wait: float = 60) -> dict[str, Any]:
    with pair.ps_client() as c:
        return c.post(f"/v1/replications/{repl}/points", {"tag": tag, "wait": wait})


def random_writes(rnd: random.Random, size: int, n: int) -> list[tuple[int, bytes]]:
    return [
        (rnd.randrange(0, size - 300_000), rnd.randbytes(rnd.randrange(1, 300_000)))
        for _ in range(n)
    ]


def test_initial_full_copy(pair: Pair, tmp_path: Path) -> None:
    source = random_image(tmp_path / "src.img", 48 * MiB, seed=1)
    start(pair, source)
    status = pair.wait("r1", initial_done)
    assert same_bytes(source, target_of(pair))
    assert status["last_point"]["changeset"] == "initial"
    # Holes stay holes on the target: the copy is sparse-aware.
    assert target_of(pair).stat().st_blocks * 512 <= source.stat().st_blocks * 512 + MiB


def test_differential_resync_sends_only_what_differs(pair: Pair, tmp_path: Path) -> None:
    source = random_image(tmp_path / "src.img", 64 * MiB, seed=2)
    (pair.ds / "r1").mkdir()
    shutil.copyfile(source, target_of(pair))
    rnd = random.Random(2)
    changed = [rnd.randrange(0, 64 * MiB // BS) * BS for _ in range(20)]
    with open(source, "r+b") as f:
        for offset in changed:
            f.seek(offset)
            f.write(rnd.randbytes(BS))
    start(pair, source, initial="diff")
    status = pair.wait("r1", initial_done)
    assert same_bytes(source, target_of(pair))
    # 20 changed blocks (1.25 MiB) plus digests, not 64 MiB.
    assert status["sent_bytes"] < 4 * MiB, status


def test_continuous_replication_and_recovery_points(pair: Pair, tmp_path: Path) -> None:
    size = 32 * MiB
    source = random_image(tmp_path / "src.img", size, seed=3)
    start(pair, source)
    pair.wait("r1", initial_done)
    rnd = random.Random(3)
    expected: dict[str, str] = {}
    for tag in ("p1", "p2", "p3"):
        write_and_feed(pair, source, random_writes(rnd, size, 25))
        answer = point(pair, tag)
        assert answer["delivered"] is True, answer
        expected[tag] = sha256_of(source)
    assert same_bytes(source, target_of(pair))
    with pair.mt_client() as c:
        points = c.get("/v1/disks/r1/points")
        assert [p["tag"] for p in points][-3:] == ["p1", "p2", "p3"]
        for tag, digest in expected.items():
            out = f"restore/{tag}-flat.vmdk"
            c.post("/v1/disks/r1/materialise", pair.materialise("r1", f"tag:{tag}", out))
            assert sha256_of(pair.ds / out) == digest, tag
    # Materialising older points did not touch the replica.
    assert same_bytes(source, target_of(pair))


@pytest.mark.parametrize("victim", ["master-target", "process-server"])
def test_kill9_mid_transfer_then_restart_is_byte_identical(
    pair_factory: Any, tmp_path: Path, victim: str
) -> None:
    pair = pair_factory(ps_args=["--bandwidth", "12M"])
    source = random_image(tmp_path / "src.img", 64 * MiB, seed=4, data_fraction=0.9)
    start(pair, source)
    time.sleep(2.0)  # about 24 MiB are through at 12 MiB/s
    service = pair.mt if victim == "master-target" else pair.ps
    service.kill9()
    with pair.mt_client() if victim == "process-server" else _nothing() as c:
        if c is not None:  # the master target kept an ack of what is on disk
            session = c.get("/v1/disks/r1")["session"]
            assert session["changeset"] == "initial" and session["acked"] > 0
    time.sleep(1.0)
    service.start()
    status = pair.wait("r1", initial_done, timeout=90)
    assert same_bytes(source, target_of(pair))
    # It continued: less than the whole disk went over the wire after the restart.
    assert status["resumed_from"] > 0, status


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_master_target_down_then_back_loses_nothing(pair: Pair, tmp_path: Path) -> None:
    size = 32 * MiB
    source = random_image(tmp_path / "src.img", size, seed=5)
    start(pair, source)
    pair.wait("r1", initial_done)
    pair.mt.kill9()
    rnd = random.Random(5)
    expected = {}
    for tag in ("d1", "d2", "d3"):
        write_and_feed(pair, source, random_writes(rnd, size, 10))
        answer = point(pair, tag, wait=0.5)
        assert answer.get("delivered") is not True
        expected[tag] = sha256_of(source)
    status = pair.wait("r1", lambda s: s["outbox"]["change_sets"] == 3)
    assert status["error"] is not None and status["phase"] == "retrying"
    pair.mt.start()
    pair.wait("r1", lambda s: s["outbox"]["change_sets"] == 0, timeout=60)
    assert same_bytes(source, target_of(pair))
    with pair.mt_client() as c:
        tags = [p["tag"] for p in c.get("/v1/disks/r1/points")]
        assert tags[-3:] == ["d1", "d2", "d3"]  # in order
        for tag, digest in expected.items():
            out = f"restore/{tag}-flat.vmdk"
            c.post("/v1/disks/r1/materialise", pair.materialise("r1", f"tag:{tag}", out))
            assert sha256_of(pair.ds / out) == digest, tag


def test_wrong_token_is_refused_and_not_logged(pair: Pair) -> None:
    secret = "not-the-token-" + "x" * 20
    for service in (pair.mt, pair.ps):
        with service.client(secret) as c, pytest.raises(RemoteError) as err:
            c.get("/metrics")
        assert err.value.status == 401 and err.value.remote_code == "VMDR-E0351"
        with service.client(None) as c, pytest.raises(RemoteError) as err:
            c.get("/v1/capabilities" if service is pair.mt else "/v1/replications")
        assert err.value.status == 401
        with service.client(None) as c:
            assert c.get("/healthz") == {"status": "ok"}
        log = service.log.read_text()
        assert "refused GET /metrics" in log
        assert secret not in log


def test_metrics_are_prometheus_text(pair: Pair) -> None:
    import httpx

    from vmdr.transport.tls import client_context

    response = httpx.get(
        f"{pair.mt.url}/metrics",
        verify=client_context(pair.mt.ca_file),
        headers={"authorization": f"Bearer {pair.mt_token}"},
    )
    assert response.status_code == 200
    assert "vmdr_http_requests_total" in response.text
    assert "vmdr_mt_points_total" in response.text


@pytest.mark.parametrize(
    "path", ["../escape-flat.vmdk", "/etc/shadow.vmdk", "[other] x-flat.vmdk", "a/../../b.vmdk"]
)
def test_path_outside_datastore_roots_is_refused(pair: Pair, path: str) -> None:
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.put("/v1/disks/evil", pair.disk("evil", path, size=MiB, create=True))
    assert err.value.remote_code in ("VMDR-E0420", "VMDR-E0421")
    assert err.value.status in (403, 404)
    assert not (pair.root / "escape-flat.vmdk").exists()


def test_delete_with_forget_target_lets_a_replication_start_over(
    pair: Pair, tmp_path: Path
) -> None:
    source = random_image(tmp_path / "src.img", 16 * MiB, seed=6)
    start(pair, source)
    pair.wait("r1", initial_done)
    with pair.ps_client() as c:
        answer = c.delete("/v1/replications/r1", params={"forget_target": "true"})
    assert answer["target"]["forgotten"] is True
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.get("/v1/disks/r1")
    assert err.value.remote_code == "VMDR-E0423"
    assert target_of(pair).exists()  # the disk file itself is kept
    # Start over on the same disk, differentially: it is equal, so little is sent.
    with open(source, "r+b") as f:
        f.write(b"changed on the source")
    start(pair, source, initial="diff")
    status = pair.wait("r1", initial_done)
    assert same_bytes(source, target_of(pair))
    assert status["sent_bytes"] < MiB


def test_bandwidth_limit_is_honoured(pair_factory: Any, tmp_path: Path) -> None:
    pair = pair_factory(ps_args=["--bandwidth", "4M", "--no-compress"])
    source = tmp_path / "src.img"
    source.write_bytes(random.Random(7).randbytes(12 * MiB))
    start(pair, source)
    status = pair.wait("r1", initial_done)
    assert same_bytes(source, target_of(pair))
    # 12 MiB at 4 MiB/s, less a quarter second of burst: a correctness bound
    # (the limit holds), not a speed measurement.
    assert status["initial_seconds"] >= 2.7, status
    assert status["sent_bytes"] >= 12 * MiB


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


def test_a_large_change_set_is_cut_and_sent_in_bounded_memory(pair: Pair, tmp_path: Path) -> None:
    """A 256 MiB change set waits in the outbox while the master target is
    down, then drains: the process server's peak memory stays under 200 MiB
    (it read the whole file and built every message first: 859 MiB)."""
    size = 256 * MiB
    source = random_image(tmp_path / "src.img", size, seed=9)
    start(pair, source)
    pair.wait("r1", initial_done, timeout=120)
    pair.mt.kill9()
    with open(source, "r+b") as f:  # every block changes
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
    with pair.ps_client() as c:
        c.post("/v1/replications/r1/dirty", {"extents": [[0, size]]})
    point(pair, "big", wait=0.5)
    pair.wait("r1", lambda s: s["outbox"]["change_sets"] == 1, timeout=120)
    pair.mt.start()
    pair.wait("r1", lambda s: s["outbox"]["change_sets"] == 0, timeout=180)
    assert same_bytes(source, target_of(pair))
    assert pair.ps.proc is not None
    assert peak_rss(pair.ps.proc.pid) < 200 * MiB
