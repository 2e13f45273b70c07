"""What runs inside the engine's DBOS workflows, on a worker: a job's steps
(or its flow), each checkpointed when it ends; the step that a crash
interrupted runs again, a finished one never does. A step never raises into
DBOS: its outcome (value, or error and whether it was a cancel) is what is
checkpointed, so a replay sees the same outcome. The cancel watcher polls
the flags of this worker's running jobs once a second and cancels the data
operations their steps registered."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from vmdr.control.jobs.kinds import (
    ACTIVE,
    CancelScope,
    JobCancelled,
    JobKind,
    JobState,
    StepContext,
    Throttle,
)
from vmdr.control.jobs.store import JobStore
from vmdr.model.errors import VmdrError

__all__ = ["TICK", "WORKFLOW", "Runner", "UnknownKind", "WorkflowLost", "set_current", "undo"]

log = logging.getLogger(__name__)
T = TypeVar("T")
WORKFLOW = "vmdr.job"
TICK = "vmdr.tick"
CANCEL_POLL = 1.0


class UnknownKind(VmdrError):
    code = "VMDR-E0519"
    msg = "worker {worker} does not know job kind {kind!r}"
    fix = "Upgrade every worker to the configuration server's version, then retry the job."


class WorkflowLost(VmdrError):
    code = "VMDR-E0509"
    msg = "job {job} cannot go on: its workflow ended ({status}) without ending the job"
    fix = "Retry the job (`vmdr jobs retry {job}`); the item was put back where it started."


class _StepFailed(Exception):
    def __init__(self, error: dict[str, Any], cancelled: bool) -> None:
        super().__init__(error.get("message"))
        self.error, self.cancelled = error, cancelled


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, VmdrError):
        return exc.to_dict()
    return {"code": "VMDR-E0500", "message": repr(exc), "fix": ""}


def undo(
    kind: JobKind, job_id: str, params: dict[str, Any], error: dict[str, Any], throttle: Throttle
) -> None:
    """The kind's ``on_fail`` for a job that failed or was cancelled (e.g. its
    item back where the operation started); its own failure is logged."""
    assert kind.on_fail is not None
    try:
        kind.on_fail(StepContext(job_id, params, throttle), error)
    except Exception:  # the job's own error is the one to report
        log.exception("job %s: on_fail of %s failed", job_id, kind.name)
    finally:
        throttle.flush(job_id)


@dataclass
class _Running:
    scope: CancelScope
    may_cancel: bool


class Runner:
    def __init__(
        self,
        kinds: dict[str, JobKind],
        store: JobStore,
        throttle: Throttle,
        periodic: dict[str, tuple[float, Callable[[], Any]]],
        executor_id: str,
    ) -> None:
        self.kinds, self.store, self.sessions = kinds, store, store.sessions
        self.throttle, self.periodic = throttle, periodic
        self.executor_id = executor_id
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticked: dict[str, float] = {}  # periodic task: when it last ran here

    def start(self) -> None:
        threading.Thread(target=self._watch_cancels, name="vmdr-cancels", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch_cancels(self) -> None:
        while not self._stop.wait(CANCEL_POLL):
            with self._lock:
                ids = list(self._running)
            if not ids:
                continue
            try:
                asked = self.store.cancel_requested(ids)
            except Exception:  # a database hiccup: next second
                log.debug("cancel poll failed", exc_info=True)
                continue
            with self._lock:
                hits = [self._running[i] for i in asked if i in self._running]
            for running in hits:
                if running.may_cancel:
                    running.scope.cancel()

    # -- running (inside a DBOS workflow) --------------------------------------------------
    def run(self, job_id: str) -> str:
        from dbos import DBOS
        from dbos._error import DBOSException

        head = DBOS.run_step({"name": "begin"}, self.store.begin, job_id)
        if head is None:
            return "gone"
        kind = self.kinds.get(head["kind"])
        if kind is None:  # a worker older than the job's kind
            unknown = UnknownKind(kind=head["kind"], worker=self.executor_id).to_dict()
            finish = self.store.finish
            return str(DBOS.run_step({"name": "finish"}, finish, job_id, JobState.FAILED, unknown))
        flow = _DurableFlow(self, job_id, head["params"], kind)
        state: str = JobState.SUCCEEDED
        error: dict[str, Any] | None = None
        try:
            if kind.flow is not None:
                kind.flow(flow)
            else:
                for index, (name, fn) in enumerate(kind.steps):
                    if index >= head["step"]:
                        flow.run_step(name, fn, index)
        except _StepFailed as failed:
            state = JobState.CANCELLED if failed.cancelled else JobState.FAILED
            error = failed.error
        except DBOSException as exc:
            # The engine cannot go on with this workflow (a step list changed
            # under the pinned version, a child's workflow gone): the job
            # fails now, written outside the workflow's broken record.
            lost = WorkflowLost(job=job_id, status=type(exc).__name__).to_dict()
            ended = self.store.finish(job_id, JobState.FAILED, lost, only_active=True)
            if ended and kind.on_fail is not None:
                undo(kind, job_id, head["params"], lost, self.throttle)
            raise
        except JobCancelled as exc:  # a flow told to stop while it waited
            state, error = JobState.CANCELLED, exc.to_dict()
        except Exception as exc:  # a flow's own refusal, outside its steps
            state, error = JobState.FAILED, _error(exc)
        if error is not None and kind.on_fail is not None:
            DBOS.run_step({"name": "undo"}, undo, kind, job_id, head["params"], error,
                          self.throttle)  # fmt: skip
        return str(DBOS.run_step({"name": "finish"}, self.store.finish, job_id, state, error))

    def execute(
        self, job_id: str, params: dict[str, Any], kind: JobKind, name: str, index: int | None,
        fn: Callable[[StepContext], Any],
    ) -> dict[str, Any]:  # fmt: skip
        """One step, as DBOS runs it: never raises, returns the outcome."""
        may_cancel = kind.may_cancel(index if index is not None else 0)
        if may_cancel and self.store.cancel_requested([job_id]):
            self.store.event(job_id, name, "cancelled")
            return {"ok": False, "cancelled": True,
                    "error": JobCancelled(job=job_id, step=name).to_dict()}  # fmt: skip
        scope = CancelScope()
        with self._lock:
            self._running[job_id] = _Running(scope, may_cancel)
        self.store.event(job_id, name, "start")
        ctx = StepContext(job_id, params, self.throttle, scope, name)
        try:
            value = fn(ctx)
        except Exception as exc:
            cancelled = scope.requested.is_set()
            error = JobCancelled(job=job_id, step=name).to_dict() if cancelled else _error(exc)
            log.warning("job %s step %s %s: %s", job_id, name,
                        "cancelled" if cancelled else "failed", error["message"])  # fmt: skip
            log.debug("%s", traceback.format_exc())
            self.throttle.flush(job_id)
            self.store.event(job_id, name, "cancelled" if cancelled else "error",
                             message=error["message"])  # fmt: skip
            return {"ok": False, "cancelled": cancelled, "error": error}
        finally:
            with self._lock:
                self._running.pop(job_id, None)
        self.throttle.flush(job_id)
        self.store.end_step(job_id, name, index)
        return {"ok": True, "value": value}

    def tick(self, name: str, scheduled: datetime) -> None:
        from dbos import DBOS

        seconds, fn = self.periodic[name]
        when = scheduled if scheduled.tzinfo else scheduled.replace(tzinfo=UTC)
        late = (datetime.now(UTC) - when).total_seconds()
        since = time.monotonic() - self._ticked.get(name, float("-inf"))
        if late > max(2 * seconds, 10.0) and since < seconds:
            # Fires that queued up while ticks ran slow (or no worker ran)
            # would only repeat the work of the one that just ran. One late
            # tick per period still runs: lateness never starves the task.
            log.debug("tick %s of %s skipped: %.0f s late", name, scheduled, late)
            return
        self._ticked[name] = time.monotonic()
        DBOS.run_step({"name": name}, fn)


@dataclass
class _DurableFlow:
    """``kinds.Flow`` on DBOS: every call is a checkpointed operation."""

    runner: Runner
    job_id: str
    params: dict[str, Any]
    kind: JobKind

    def run_step(self, name: str, fn: Callable[[StepContext], T], index: int | None) -> T:
        from dbos import DBOS

        outcome = DBOS.run_step(
            {"name": name}, self.runner.execute, self.job_id, self.params, self.kind, name,
            index, fn,
        )  # fmt: skip
        if not outcome["ok"]:
            raise _StepFailed(outcome["error"], outcome["cancelled"])
        value: T = outcome["value"]
        return value

    def step(self, name: str, fn: Callable[[StepContext], T]) -> T:
        return self.run_step(name, fn, None)

    def wait_job(self, job_id: str) -> tuple[str, dict[str, Any] | None]:
        from dbos import DBOS
        from dbos._error import DBOSException

        def state() -> tuple[str, dict[str, Any] | None]:
            with self.runner.sessions() as s:
                job = self.runner.store.get(s, job_id)
                return job.state, job.error

        try:
            DBOS.retrieve_workflow(job_id).get_result(polling_interval_sec=0.5)  # recorded
        except DBOSException:
            # The child's workflow is gone (a restored database) or broke:
            # its row says how it ended, or will (``reconcile``).
            while True:
                now: tuple[str, dict[str, Any] | None] = DBOS.run_step({"name": "job-state"}, state)
                if now[0] not in ACTIVE:
                    return now
                DBOS.sleep(5.0)
        result: tuple[str, dict[str, Any] | None] = DBOS.run_step({"name": "job-state"}, state)
        return result

    def receive(self, topic: str, timeout: float) -> str | None:
        from dbos import DBOS

        message: str | None = DBOS.recv(topic, timeout_seconds=timeout)
        return message


_current: Runner | None = None


def _runner() -> Runner:
    if _current is None:
        raise RuntimeError("no vmdr job engine runs a worker in this process")
    return _current


def set_current(runner: Runner) -> None:
    """The runner whose workflows this process executes (one DBOS per process)."""
    global _current
    _current = runner


def _register_workflows() -> Any:
    from dbos import DBOS

    @DBOS.workflow(name=WORKFLOW)
    def job(job_id: str) -> str:
        return _runner().run(job_id)

    @DBOS.workflow(name=TICK)
    def tick(scheduled: datetime, name: str) -> None:
        _runner().tick(name, scheduled)

    return tick


tick_workflow = _register_workflows()
