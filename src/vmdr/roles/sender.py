"""Sending one change set to the master target: frames, compression, a
bandwidth limit, and resumption from the last acknowledged offset.

A change set on the wire is::

    CONTROL {"op": "begin", "initial": bool, "resume_from": N}
    DiskInfo, DataRun/ZeroRun (ascending, from N on), Done
    CONTROL {"op": "cut", "time": T, "tag": str|null, "kind": "crash"|"app"}
    END

Before sending, the sender asks the master target where the disk stands
(``GET /v1/disks/{disk}``): a change set already committed there is not sent
again (its point is returned), and an open one resumes from its ack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vmdr.blocks.messages import DataRun, Message, ZeroRun
from vmdr.roles.clients import MasterTargetClient
from vmdr.transport import frames

__all__ = ["Cut", "RateLimiter", "resume_offset", "send_changeset", "trim"]


@dataclass(frozen=True)
class Cut:
    """The recovery point that ends a change set."""

    time: float
    tag: str | None = None
    kind: str = "crash"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "cut", "time": self.time, "tag": self.tag, "kind": self.kind}


class RateLimiter:
    """A token bucket: at most ``rate`` bytes per second on average, bursts of
    a quarter second. ``rate`` 0 means no limit. Shared by a process server's
    senders, so the limit holds for the service as a whole."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._last = time.monotonic()

    def consume(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate / 4, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


def trim(messages: Iterable[Message], resume_from: int) -> Iterator[Message]:
    """Drop runs (or the parts of them) before ``resume_from``."""
    for msg in messages:
        if isinstance(msg, DataRun):
            end = msg.offset + msg.length
            if end <= resume_from:
                continue
            if msg.offset < resume_from:
                cut = resume_from - msg.offset
                msg = DataRun(resume_from, memoryview(msg.data).cast("B")[cut:])
        elif isinstance(msg, ZeroRun):
            end = msg.offset + msg.length
            if end <= resume_from:
                continue
            if msg.offset < resume_from:
                msg = ZeroRun(resume_from, end - resume_from)
        yield msg


def resume_offset(client: MasterTargetClient, disk: str, changeset: str) -> tuple[int, Any]:
    """Where to start sending ``changeset``: ``(offset, None)``, or
    ``(-1, point)`` when the master target already committed it."""
    state = client.disk(disk)
    latest = state.get("latest_point")
    if latest and latest["changeset"] == changeset:
        return -1, latest
    session = state.get("session")
    if session and session["changeset"] == changeset:
        return int(session["acked"]), None
    return 0, None


def body(
    messages: Iterable[Message],
    *,
    initial: bool,
    resume_from: int,
    cut: Cut | Callable[[], Cut],
    compress: bool,
    limiter: RateLimiter,
    sent: list[int],
) -> Iterator[bytes]:
    """The frames of one change set; ``sent[0]`` counts bytes on the wire."""
    encoder = frames.Encoder(compress=compress)
    begin = frames.Control({"op": "begin", "initial": initial, "resume_from": resume_from})
    for msg in _chain((begin,), messages, _ending(cut)):
        # One write per frame (header and payload together): half the TLS
        # records and HTTP chunks of writing the pieces one by one.
        frame = b"".join(encoder.encode(msg))
        limiter.consume(len(frame))
        sent[0] += len(frame)
        yield frame


def _ending(cut: Cut | Callable[[], Cut]) -> Iterator[frames.Item]:
    """The cut and End; a callable cut is timed when the data has been read
    (an initial sync's point is as of its end, not its start)."""
    point = cut() if callable(cut) else cut
    yield frames.Control(point.to_dict())
    yield frames.End()


def _chain(*parts: Iterable[Any]) -> Iterator[Any]:
    for part in parts:
        yield from part


def send_changeset(
    client: MasterTargetClient,
    disk: str,
    changeset: str,
    messages: Iterable[Message],
    *,
    initial: bool,
    resume_from: int,
    cut: Cut | Callable[[], Cut],
    compress: bool = True,
    limiter: RateLimiter | None = None,
) -> dict[str, Any]:
    """Send ``messages`` (already starting at ``resume_from``) and return the
    master target's answer: ``{"acked": N, "point": {...}}`` plus ``"sent"``."""
    sent = [0]
    answer = client.upload(
        f"/v1/disks/{disk}/changesets/{changeset}",
        body(
            messages,
            initial=initial,
            resume_from=resume_from,
            cut=cut,
            compress=compress,
            limiter=limiter or RateLimiter(0),
            sent=sent,
        ),
    )
    answer = dict(answer)
    answer["sent"] = sent[0]
    return answer
