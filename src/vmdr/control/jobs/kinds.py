"""What a job is, independent of the engine that runs it: its states, its
kind (a declared list of named steps, or a flow for the few kinds that wait
on other jobs or on a person), and what a step sees.

A step is a function of a ``StepContext``. It is idempotent (check, then act):
the engine runs a step at least once and records it as done when it returns,
so a worker killed mid-step runs that step again elsewhere, never a finished
one. Nothing here imports the engine (DBOS): steps and flows are testable with
the in-memory context of ``tests/unit``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from vmdr.model.errors import VmdrError

__all__ = [
    "ACTIVE",
    "CancelScope",
    "Flow",
    "JobCancelled",
    "JobConflict",
    "JobKind",
    "JobState",
    "JobUnknown",
    "NotCancellable",
    "NotRetryable",
    "Reporter",
    "StepContext",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE


ACTIVE = (JobState.QUEUED, JobState.RUNNING)


class JobConflict(VmdrError):
    code = "VMDR-E0511"
    http_status = 409
    msg = "protected item {item} already has job {job} ({kind}, {state})"
    fix = "Wait for it to finish (`vmdr jobs watch {job}`) or cancel it, then retry."


class JobUnknown(VmdrError):
    code = "VMDR-E0512"
    http_status = 404
    msg = "no job {job}"
    fix = "List jobs with `vmdr jobs list`."


class JobCancelled(VmdrError):
    code = "VMDR-E0513"
    msg = "job {job} was cancelled at step {step}"


class NotCancellable(VmdrError):
    code = "VMDR-E0514"
    http_status = 409
    msg = "job {job} ({kind}) cannot be cancelled at step {step}"
    fix = "Let it finish; then undo its effect with the matching operation."


class NotRetryable(VmdrError):
    code = "VMDR-E0517"
    http_status = 409
    msg = "job {job} ({kind}) is {state}: only a failed or cancelled job is retried"
    fix = "Watch it (`vmdr jobs watch {job}`); retry it if it fails."


class Reporter(Protocol):
    """Where a step's progress goes (the job's events)."""

    def progress(self, job_id: str, step: str, done_bytes: int, message: str | None) -> None: ...


@dataclass
class CancelScope:
    """A running job's cancellation: the engine sets ``requested`` (the
    user asked, the kind allows it at this step) and cancels every data
    operation the step has registered, at once, not at the next step."""

    requested: threading.Event = field(default_factory=threading.Event)
    _ops: set[Any] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        with self._lock:
            self.requested.set()
            ops = list(self._ops)
        for op in ops:
            op.cancel()

    @contextmanager
    def running(self, op: Any) -> Iterator[Any]:
        with self._lock:
            self._ops.add(op)
            late = self.requested.is_set()
        if late:
            op.cancel()
        try:
            yield op
        finally:
            with self._lock:
                self._ops.discard(op)


@dataclass
class StepContext:
    """What a step sees: the job's parameters, progress, and cancellation."""

    job_id: str
    params: dict[str, Any]
    reporter: Reporter
    scope: CancelScope = field(default_factory=CancelScope)
    step: str = ""

    def progress(self, step: str, done_bytes: int, message: str | None = None) -> None:
        self.reporter.progress(self.job_id, step, done_bytes, message)

    def args(self, model: type[M]) -> M:
        """The job's parameters seen as ``model`` (checked whole on submit;
        a view such as ``RecoveryOptions`` leaves the other keys aside)."""
        return model.model_validate({k: v for k, v in self.params.items()
                                     if k in model.model_fields})  # fmt: skip

    def with_params(self, **changes: Any) -> StepContext:
        """The same job, seen with some parameters changed (for a step that
        runs another step's code with different options)."""
        return StepContext(self.job_id, {**self.params, **changes}, self.reporter, self.scope,
                           self.step)  # fmt: skip

    def cancellable(self, op: Any) -> Any:
        """``with ctx.cancellable(DiffResync(a, b)) as op: op.run()``: a
        cancel request reaches the operation while it runs."""
        return self.scope.running(op)

    def run(self, op: Any) -> Any:
        """Run a data operation (``op.run()``) that a cancel request stops."""
        with self.scope.running(op):
            return op.run()

    @property
    def cancel_requested(self) -> bool:
        return self.scope.requested.is_set()

    def raise_if_cancelled(self) -> None:
        """For steps that wait in a loop (a remote initial sync)."""
        if self.scope.requested.is_set():
            raise JobCancelled(job=self.job_id, step=self.step)

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once for a cancel request."""
        if self.scope.requested.wait(seconds):
            self.raise_if_cancelled()


Step = Callable[[StepContext], Any]


class Flow(Protocol):
    """The durable primitives a flow kind (a recovery plan) is written in.
    Each call is recorded: after a crash the flow is replayed, and what was
    done returns its recorded result instead of running again."""

    job_id: str
    params: dict[str, Any]

    def step(self, name: str, fn: Callable[[StepContext], T]) -> T: ...

    def wait_job(self, job_id: str) -> tuple[str, dict[str, Any] | None]: ...

    def receive(self, topic: str, timeout: float) -> str | None: ...


@dataclass(frozen=True)
class JobKind:
    name: str
    steps: list[tuple[str, Step]] = field(default_factory=list)
    # Steps before this index may be cancelled (None: any time).
    cancellable_before: int | None = None
    # Called once when the job fails or is cancelled (e.g. to put its
    # protected item back where the operation started).
    on_fail: Callable[[StepContext, dict[str, Any]], None] | None = None
    # Instead of steps: a flow that calls ``Flow.step`` itself (plans).
    flow: Callable[[Flow], None] | None = None
    # Which queue runs it ("operations", "replication", "plans").
    queue: str = "operations"
    # The model its parameters must fit (``jobs/params.py``), checked on submit.
    params: type[BaseModel] | None = None

    def may_cancel(self, step: int) -> bool:
        return self.cancellable_before is None or step < self.cancellable_before

    @property
    def step_names(self) -> list[str]:
        return [name for name, _ in self.steps]


class Throttle:
    """At most one progress event per second per step. What a step reports
    in between is not lost: the messages wait, a repeated one once, and are
    written joined in one event (with the newest byte count) when the second
    is over or the step ends."""

    MAX_MESSAGE = 8192

    def __init__(self, write: Callable[[str, str, int, str | None], None], every: float = 1.0):
        self._write, self._every = write, every
        self._last: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self._lock = threading.Lock()

    def progress(self, job_id: str, step: str, done_bytes: int, message: str | None) -> None:
        key, now = (job_id, step), time.monotonic()
        with self._lock:
            _, messages = self._pending.pop(key, (0, []))
            if message and (not messages or messages[-1] != message):
                messages.append(message)
            if now - self._last.get(key, -self._every) < self._every:
                self._pending[key] = (done_bytes, messages)
                return
            self._last[key] = now
        self._write(job_id, step, done_bytes, self._joined(messages))

    def _joined(self, messages: list[str]) -> str | None:
        text = "\n".join(messages)
        return text[-self.MAX_MESSAGE :] if text else None

    def flush(self, job_id: str) -> None:
        """Write what waits for this job (its step ended)."""
        with self._lock:
            keys = [k for k in self._pending if k[0] == job_id]
            waiting = [(k, self._pending.pop(k)) for k in keys]
            for k in [k for k in self._last if k[0] == job_id]:
                del self._last[k]
        for (job, step), (done, messages) in waiting:
            self._write(job, step, done, self._joined(messages))
