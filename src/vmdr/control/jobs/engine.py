"""The job engine: vmdr's job kinds run as DBOS Transact workflows.

DBOS checkpoints every step of a workflow in the database vmdr already uses
(its ``dbos`` schema on PostgreSQL, the same file on SQLite), runs workflows
from queues with concurrency limits, recovers a dead executor's workflows
from their last finished step, and fires schedules once across all workers.
vmdr adds what is its own: the ``jobs`` rows (``store.py``: the public record
and the one-job-per-holder lock), step events, cancellation that reaches a
running data operation, and worker leases (``workers.py``).

A job is submitted in **one transaction** with whatever it changes (an
item's life-cycle state): the ``jobs`` row, the change, and the DBOS
workflow (``enqueue_in_transaction``) commit together or not at all, so no
job is ever left without its workflow, nor a state change without its job.

    one workflow per job: begin → step 0 … step n (or the kind's flow) → [undo] → finish

Steps before ``JobKind.cancellable_before`` may be cancelled: the request is
a flag on the row; the worker running the job polls the flags of its running
jobs once a second and cancels the data operations the step registered
(``StepContext.cancellable``), and a step that starts checks it first.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine as SqlEngine
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import Job, new_id
from vmdr.control.jobs.kinds import (
    ACTIVE,
    CancelScope,
    JobCancelled,
    JobConflict,
    JobKind,
    JobState,
    NotCancellable,
    StepContext,
    Throttle,
)
from vmdr.control.jobs.store import JobStore, active_job
from vmdr.model.errors import VmdrError

__all__ = ["ENGINE_VERSION", "QUEUES", "Engine", "QueueLimits"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# DBOS recovers and dequeues only workflows of its own application version.
# vmdr pins it (instead of DBOS's hash of the workflow code) so that an
# upgrade that keeps the step lists of the kinds resumes the jobs in flight.
ENGINE_VERSION = "vmdr-jobs-1"
WORKFLOW = "vmdr.job"
TICK = "vmdr.tick"
QUEUES = {"operations": "vmdr-operations", "plans": "vmdr-plans", "replication": "vmdr-replication"}
CANCEL_POLL = 1.0


@dataclass(frozen=True)
class QueueLimits:
    """How much one worker runs at once (each running job holds a thread)."""

    operations: int = 8
    plans: int = 4
    replication: int = 4
    # Replication jobs of one process server running at once, across workers.
    per_process_server: int = 4
    # How often a worker looks for queued operations (DBOS queues are
    # polled): the most a submitted operation waits before it starts. A poll
    # costs about 5 ms of CPU; plans and cycles are looked for once a second.
    poll: float = 0.5

    @property
    def threads(self) -> int:
        return self.operations + self.plans + self.replication + 8


class _StepFailed(Exception):
    def __init__(self, error: dict[str, Any], cancelled: bool) -> None:
        super().__init__(error.get("message"))
        self.error, self.cancelled = error, cancelled


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, VmdrError):
        return exc.to_dict()
    return {"code": "VMDR-E0500", "message": repr(exc), "fix": ""}


@dataclass
class _Running:
    scope: CancelScope
    may_cancel: bool


@dataclass
class Engine:
    sessions: sessionmaker[Session]
    url: str
    kinds: dict[str, JobKind] = field(default_factory=dict)
    periodic: dict[str, tuple[float, Callable[[], Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = JobStore(self.sessions)
        self.throttle = Throttle(self.store.progress)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._client: Any = None
        self._stop = threading.Event()
        self.executor_id: str | None = None

    # -- declaring ---------------------------------------------------------------------
    def register(self, kind: JobKind) -> None:
        self.kinds[kind.name] = kind

    def every(self, name: str, seconds: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` every ``seconds`` on one worker (a DBOS schedule)."""
        self.periodic[name] = (seconds, fn)

    @property
    def bind(self) -> SqlEngine:
        bind = self.sessions.kw["bind"]
        assert isinstance(bind, SqlEngine)
        return bind

    @property
    def client(self) -> Any:
        with self._lock:
            return self._make_client()

    def _make_client(self) -> Any:
        if self._client is None:
            from dbos import DBOSClient

            self._client = DBOSClient(system_database_engine=self.bind, application_name="vmdr")
        return self._client

    # -- submitting ----------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        params: dict[str, Any],
        holder: str | None = None,
        *,
        job_id: str | None = None,
        parent: str | None = None,
        partition: str | None = None,
        prepare: Callable[[Session, Job], Any] | None = None,
    ) -> str:
        """Queue a job; its id. ``prepare(session, job)`` runs in the same
        transaction (and may refuse by raising). With ``job_id``, a second
        call with the same id returns it again (a flow's step re-run)."""
        spec = self.kinds.get(kind)
        if spec is None:
            raise VmdrError(detail=f"unknown job kind {kind!r}")
        # Made (and its connection checked) before the transaction: inside
        # it, the check would wait for a pooled connection that concurrent
        # submissions hold while they wait for this one's lock.
        _ = self.client
        if job_id is not None:
            with self.sessions() as s:
                if s.get(Job, job_id) is not None:
                    return job_id
        try:
            with self.sessions.begin() as s:
                job = Job(id=job_id or new_id(), kind=kind, params=params, item_id=holder,
                          state=JobState.QUEUED, parent_id=parent)  # fmt: skip
                s.add(job)
                s.flush()  # the holder's lock: the partial unique index refuses a second
                if prepare is not None:
                    prepare(s, job)
                self._enqueue(s, job.id, spec, partition)
                return job.id
        except IntegrityError:
            with self.sessions() as s:
                if job_id is not None and s.get(Job, job_id) is not None:
                    return job_id
                other = active_job(s, holder)
            if other is None:  # it finished meanwhile: try once more
                return self.submit(kind, params, holder, job_id=job_id, parent=parent,
                                   partition=partition, prepare=prepare)  # fmt: skip
            raise JobConflict(
                item=holder, job=other.id, kind=other.kind, state=other.state
            ) from None

    def _enqueue(self, s: Session, job_id: str, spec: JobKind, partition: str | None) -> None:
        options: dict[str, Any] = {
            "queue_name": QUEUES[spec.queue],
            "workflow_name": WORKFLOW,
            "workflow_id": job_id,
            "app_version": ENGINE_VERSION,
        }
        if spec.queue == "replication":
            options["queue_partition_key"] = partition or "local"
        self.client.enqueue_in_transaction(s, options, job_id)

    def adopt_orphans(self) -> list[str]:
        """Active jobs with no workflow (a database restored from a backup,
        which holds vmdr's tables only): each gets one, which resumes at the
        job's next step."""
        with self.sessions() as s:
            active = list(s.scalars(select(Job).where(Job.state.in_(ACTIVE))))
            known = {w.workflow_id for w in self.client.list_workflows(
                workflow_ids=[j.id for j in active])} if active else set()  # fmt: skip
            orphans = [(j.id, j.kind, j.params) for j in active if j.id not in known]
        adopted = []
        for job_id, kind, params in orphans:
            spec = self.kinds.get(kind)
            if spec is None:
                continue
            with self.sessions.begin() as s:
                self._enqueue(s, job_id, spec, params.get("partition"))
            adopted.append(job_id)
        return adopted

    # -- retention ---------------------------------------------------------------------------
    def prune(self, older_than: dt.datetime, ticks_older_than: dt.datetime) -> int:
        """Forget finished jobs last changed before ``older_than`` (rows,
        events and checkpoints) and the scheduler's finished ticks before
        ``ticks_older_than``; how many jobs went."""
        gone = 0
        while ids := self.store.prune(older_than):
            self.client.delete_workflows(ids)
            gone += len(ids)
        while True:
            ticks = self.client.list_workflows(
                name=TICK, status=["SUCCESS", "ERROR"], end_time=ticks_older_than.isoformat(),
                limit=500, load_input=False, load_output=False,
            )  # fmt: skip
            if not ticks:
                return gone
            self.client.delete_workflows([t.workflow_id for t in ticks])

    # -- cancelling and messages -----------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop; False when it is over already."""
        with self.sessions.begin() as s:
            job = self.store.get(s, job_id)
            if job.state not in ACTIVE:
                return False
            kind = self.kinds.get(job.kind)
            if kind is not None and not kind.may_cancel(job.step):
                raise NotCancellable(job=job_id, kind=job.kind, step=job.step)
            job.cancel_requested = True
            # A plan's running items stop with it (each where its kind allows).
            for child in s.scalars(select(Job).where(Job.parent_id == job_id,
                                                     Job.state.in_(ACTIVE))):  # fmt: skip
                child_kind = self.kinds.get(child.kind)
                if child_kind is None or child_kind.may_cancel(child.step):
                    child.cancel_requested = True
        return True

    def send(self, job_id: str, topic: str, message: str) -> None:
        """A message for a flow waiting in ``Flow.receive(topic)``."""
        self.client.send(job_id, message, topic)

    # -- the worker ----------------------------------------------------------------------
    def prepare_schema(self) -> None:
        """Create or update the engine's tables (a process that submits jobs
        but runs none: an API replica)."""
        from dbos import DBOS

        DBOS.migrate(self.url)

    def launch_worker(self, executor_id: str, limits: QueueLimits | None = None) -> None:
        """Run workflows in this process (one DBOS executor)."""
        from dbos import DBOS

        limits = limits or QueueLimits()
        global _current
        _current = self
        self.executor_id = executor_id
        DBOS(
            config={
                "name": "vmdr",
                "system_database_url": self.url,
                "application_version": ENGINE_VERSION,
                "executor_id": executor_id,
                "max_executor_threads": limits.threads,
                "log_level": "WARNING",
            }
        )
        DBOS.launch()
        policy: Literal["always_update"] = "always_update"
        poll = limits.poll
        DBOS.register_queue(QUEUES["operations"], worker_concurrency=limits.operations,
                            polling_interval_sec=poll, on_conflict=policy)  # fmt: skip
        DBOS.register_queue(QUEUES["plans"], worker_concurrency=limits.plans,
                            polling_interval_sec=1.0, on_conflict=policy)  # fmt: skip
        DBOS.register_queue(
            QUEUES["replication"], worker_concurrency=limits.replication,
            partition_concurrency=limits.per_process_server, polling_interval_sec=1.0,
            on_conflict=policy,
        )  # fmt: skip
        DBOS.apply_schedules([
            {"schedule_name": f"vmdr-{name}", "workflow_fn": _tick, "schedule": _cron(seconds),
             "context": name}
            for name, (seconds, _) in self.periodic.items()
        ])  # fmt: skip
        threading.Thread(target=self._watch_cancels, name="vmdr-cancels", daemon=True).start()
        self.adopt_orphans()

    def shutdown(self) -> None:
        self._stop.set()
        if _current is self:
            from dbos import DBOS

            DBOS.destroy(workflow_completion_timeout_sec=0)

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
        kind = self.kinds[head["kind"]]
        flow = _DurableFlow(self, job_id, head["params"], kind)
        state, error = JobState.SUCCEEDED, None
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
        except DBOSException:
            raise  # the engine's own (cancelled workflow, lost ownership): not the job's
        except JobCancelled as exc:  # a flow told to stop while it waited
            state, error = JobState.CANCELLED, exc.to_dict()
        except Exception as exc:  # a flow's own refusal, outside its steps
            state, error = JobState.FAILED, _error(exc)
        if error is not None and kind.on_fail is not None:
            DBOS.run_step({"name": "undo"}, self._undo, job_id, head["params"], kind, error)
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

    def _undo(self, job_id: str, params: dict[str, Any], kind: JobKind,
              error: dict[str, Any]) -> None:  # fmt: skip
        assert kind.on_fail is not None
        try:
            kind.on_fail(StepContext(job_id, params, self.throttle), error)
        except Exception:  # the job's own error is the one to report
            log.exception("job %s: on_fail of %s failed", job_id, kind.name)

    def tick(self, name: str) -> None:
        from dbos import DBOS

        _, fn = self.periodic[name]
        DBOS.run_step({"name": name}, fn)


@dataclass
class _DurableFlow:
    """``kinds.Flow`` on DBOS: every call is a checkpointed operation."""

    engine: Engine
    job_id: str
    params: dict[str, Any]
    kind: JobKind

    def run_step(self, name: str, fn: Callable[[StepContext], T], index: int | None) -> T:
        from dbos import DBOS

        outcome = DBOS.run_step(
            {"name": name}, self.engine.execute, self.job_id, self.params, self.kind, name,
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

        DBOS.retrieve_workflow(job_id).get_result(polling_interval_sec=0.5)  # durable, recorded

        def state() -> tuple[str, dict[str, Any] | None]:
            with self.engine.sessions() as s:
                job = self.engine.store.get(s, job_id)
                return job.state, job.error

        result: tuple[str, dict[str, Any] | None] = DBOS.run_step({"name": "job-state"}, state)
        return result

    def receive(self, topic: str, timeout: float) -> str | None:
        from dbos import DBOS

        message: str | None = DBOS.recv(topic, timeout_seconds=timeout)
        return message


_current: Engine | None = None


def _engine() -> Engine:
    if _current is None:
        raise RuntimeError("no vmdr job engine runs a worker in this process")
    return _current


def _cron(seconds: float) -> str:
    """A six-field cron line firing every ``seconds`` (a divisor of 60 s,
    or whole minutes)."""
    whole = max(1, round(seconds))
    if whole < 60:
        return f"*/{whole} * * * * *"
    return f"0 */{max(1, whole // 60)} * * * *"


def _register_workflows() -> Any:
    from dbos import DBOS

    @DBOS.workflow(name=WORKFLOW)
    def job(job_id: str) -> str:
        return _engine().run(job_id)

    @DBOS.workflow(name=TICK)
    def tick(scheduled: datetime, name: str) -> None:
        _engine().tick(name)

    return tick


_tick = _register_workflows()
