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
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine as SqlEngine
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import Job, new_id
from vmdr.control.jobs.kinds import (
    ACTIVE,
    JobCancelled,
    JobConflict,
    JobKind,
    JobState,
    NotCancellable,
    Throttle,
)
from vmdr.control.jobs.params import checked
from vmdr.control.jobs.runner import TICK, WORKFLOW, Runner, WorkflowLost, set_current, undo
from vmdr.control.jobs.store import JobStore, active_job
from vmdr.model.errors import VmdrError

__all__ = ["ENGINE_VERSION", "QUEUES", "Engine", "QueueLimits"]

log = logging.getLogger(__name__)

# DBOS recovers and dequeues only workflows of its own application version.
# vmdr pins it (instead of DBOS's hash of the workflow code) so that an
# upgrade that keeps the step lists of the kinds resumes the jobs in flight.
ENGINE_VERSION = "vmdr-jobs-1"
QUEUES = {
    "operations": "vmdr-operations",
    "plans": "vmdr-plans",
    "replication": "vmdr-replication",
    "ticks": "vmdr-ticks",
}


@dataclass(frozen=True)
class QueueLimits:
    """How much one worker runs at once (each running job holds a thread)."""

    operations: int = 8
    plans: int = 4
    replication: int = 4
    # Replication jobs of one process server running at once, across workers.
    per_process_server: int = 4
    # How often a worker looks for queued operations (DBOS queues are
    # polled, a poll is about three statements): the most a submitted
    # operation waits before it starts. Plans, cycles and the scheduler's
    # ticks are looked for every ``poll_background`` seconds. Idle, nothing
    # queued (bench/idle.py --workers 2): 0.5 s / 1 s polls and DBOS's 10 ms
    # notification batching cost 5.3 % of a core per worker; 1 s / 3 s and
    # 250 ms, 3.1 %. The rest is DBOS's own once-a-second work (its internal
    # queue, the queue list, delayed and timed-out workflows).
    poll: float = 1.0
    poll_background: float = 3.0

    @property
    def threads(self) -> int:
        return self.operations + self.plans + self.replication + 8


@dataclass
class Engine:
    sessions: sessionmaker[Session]
    url: str
    kinds: dict[str, JobKind] = field(default_factory=dict)
    periodic: dict[str, tuple[float, Callable[[], Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = JobStore(self.sessions)
        self.throttle = Throttle(self.store.progress)
        self._lock = threading.Lock()
        self._client: Any = None
        self.runner: Runner | None = None

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
        if spec.params is not None:
            params = checked(kind, spec.params, params)
        if job_id is not None:
            with self.sessions() as s:
                if s.get(Job, job_id) is not None:
                    return job_id
        if partition is not None:  # kept, for a retry or a restored job's new workflow
            params = {**params, "partition": partition}
        for attempt in range(3):
            try:
                return self._insert(spec, params, holder, job_id, parent, partition, prepare)
            except IntegrityError:
                with self.sessions() as s:
                    if job_id is not None and s.get(Job, job_id) is not None:
                        return job_id
                    other = active_job(s, holder) if holder is not None else None
                if holder is None or attempt == 2:
                    raise
                if other is not None:
                    raise JobConflict(
                        item=holder, job=other.id, kind=other.kind, state=other.state
                    ) from None
                # The holder's job ended between the refusal and the look: again.
        raise AssertionError("unreachable")

    def _insert(
        self, spec: JobKind, params: dict[str, Any], holder: str | None, job_id: str | None,
        parent: str | None, partition: str | None, prepare: Callable[[Session, Job], Any] | None,
    ) -> str:  # fmt: skip
        with self.sessions.begin() as s:
            job = Job(id=job_id or new_id(), kind=spec.name, params=params, item_id=holder,
                      state=JobState.QUEUED, parent_id=parent)  # fmt: skip
            s.add(job)
            s.flush()  # the holder's lock: the partial unique index refuses a second
            if prepare is not None:
                prepare(s, job)
            self._enqueue(s, job.id, spec, partition)
            return job.id

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

    def reconcile(self) -> dict[str, list[str]]:
        """Active jobs whose workflow is missing get one (a database restored
        from a backup holds vmdr's tables, not the engine's: it resumes at the
        job's next step); active jobs whose workflow ended without ending the
        job (it could not go on: a worker older than the job's kind, a
        dead-lettered workflow, one cancelled by hand) fail, and their kind's
        undo runs. Run at a worker's start and every minute."""
        with self.sessions() as s:
            active = [(j.id, j.kind, dict(j.params)) for j in
                      s.scalars(select(Job).where(Job.state.in_(ACTIVE)))]  # fmt: skip
        if not active:
            return {"adopted": [], "failed": []}
        statuses = {
            w.workflow_id: w.status
            for w in self.client.list_workflows(
                workflow_ids=[j for j, _, _ in active], load_input=False, load_output=False
            )
        }
        adopted, failed = [], []
        for job_id, kind, params in active:
            status, spec = statuses.get(job_id), self.kinds.get(kind)
            if status is None and spec is not None:
                with self.sessions.begin() as s:
                    self._enqueue(s, job_id, spec, params.get("partition"))
                adopted.append(job_id)
            elif status is not None and status not in ("ENQUEUED", "PENDING", "DELAYED"):
                error = WorkflowLost(job=job_id, status=status).to_dict()
                if self.store.finish(job_id, JobState.FAILED, error, only_active=True):
                    if spec is not None and spec.on_fail is not None:
                        undo(spec, job_id, params, error, self.throttle)
                    failed.append(job_id)
        return {"adopted": adopted, "failed": failed}

    # -- retention ---------------------------------------------------------------------------
    def prune(self, older_than: dt.datetime, ticks_older_than: dt.datetime) -> int:
        """Forget finished jobs last changed before ``older_than`` (rows,
        events and checkpoints) and the scheduler's finished ticks before
        ``ticks_older_than``; how many jobs went."""
        gone = 0
        while ids := self.store.finished_before(older_than):
            self.client.delete_workflows(ids)  # first: a crash between leaves rows, not orphans
            self.store.delete(ids)
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
        """Ask a job to stop; False when it is over already. A job no worker
        has begun ends at once (its kind's undo runs here), so that it stops
        holding its item's lock without waiting for its turn in the queue."""
        if self.end_queued(job_id, JobCancelled(job=job_id, step="(queued)").to_dict()):
            return True
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

    def end_queued(self, job_id: str, error: dict[str, Any], *, run_undo: bool = True) -> bool:
        """End a job that is still queued (no step ran); its workflow is
        dropped from the queue. True if it was queued."""
        with self.sessions() as s:
            job = self.store.get(s, job_id)
            kind, params = self.kinds.get(job.kind), dict(job.params)
        if not self.store.finish_if(job_id, (JobState.QUEUED,), JobState.CANCELLED, error):
            return False
        with suppress(Exception):  # a worker that begins it finds it ended anyway
            self.client.cancel_workflow(job_id)
        if run_undo and kind is not None and kind.on_fail is not None:
            undo(kind, job_id, params, error, self.throttle)
        return True

    def give_way(self, holder: str, kinds: tuple[str, ...], wait: float) -> bool:
        """The holder's job, if it is of ``kinds``, gives way (a replication
        cycle, to an operation): a queued one ends at once, a running one is
        cancelled and waited for, at most ``wait`` seconds. True when the
        holder is free of it."""
        with self.sessions() as s:
            job = active_job(s, holder)
            if job is None or job.kind not in kinds:
                return False
            job_id, queued = job.id, job.state == JobState.QUEUED
        error = {"code": JobCancelled.code, "message": "gave way to an operation", "fix": ""}
        if queued and self.end_queued(job_id, error, run_undo=False):
            return True
        try:
            if not self.cancel(job_id):
                return True  # it ended meanwhile
        except NotCancellable:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self.sessions() as s:
                if self.store.get(s, job_id).state not in ACTIVE:
                    return True
            time.sleep(0.2)
        return False

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

        from vmdr.control.jobs.runner import tick_workflow

        limits = limits or QueueLimits()
        self.runner = Runner(self.kinds, self.store, self.throttle, self.periodic, executor_id)
        set_current(self.runner)
        DBOS(
            config={
                "name": "vmdr",
                "system_database_url": self.url,
                "application_version": ENGINE_VERSION,
                "executor_id": executor_id,
                "max_executor_threads": limits.threads,
                "log_level": "WARNING",
                # Events and messages are pushed (LISTEN/NOTIFY) in batches this
                # often; DBOS's 10 ms woke an idle worker 100 times a second.
                "notification_coalesce_sec": 0.25,
            }
        )
        DBOS.launch()
        policy: Literal["always_update"] = "always_update"
        poll, slow = limits.poll, limits.poll_background
        DBOS.register_queue(QUEUES["operations"], worker_concurrency=limits.operations,
                            polling_interval_sec=poll, on_conflict=policy)  # fmt: skip
        DBOS.register_queue(QUEUES["plans"], worker_concurrency=limits.plans,
                            polling_interval_sec=slow, on_conflict=policy)  # fmt: skip
        DBOS.register_queue(
            QUEUES["replication"], worker_concurrency=limits.replication,
            partition_concurrency=limits.per_process_server, polling_interval_sec=slow,
            on_conflict=policy,
        )  # fmt: skip
        # One tick at a time across every worker: a slow tick is not overtaken.
        DBOS.register_queue(QUEUES["ticks"], global_concurrency=1, polling_interval_sec=slow,
                            on_conflict=policy)  # fmt: skip
        schedules: list[Any] = [
            {"schedule_name": f"vmdr-{name}", "workflow_fn": tick_workflow,
             "schedule": _cron(seconds), "context": name, "queue_name": QUEUES["ticks"]}
            for name, (seconds, _) in self.periodic.items()
        ]  # fmt: skip
        DBOS.apply_schedules(schedules)
        self.runner.start()
        self.reconcile()

    def shutdown(self, wait: float = 0) -> None:
        """Stop running workflows here: those still running after ``wait``
        seconds are left to the lease's take-over (or this worker's restart)."""
        if self.runner is not None:
            from dbos import DBOS

            self.runner.stop()
            DBOS.destroy(workflow_completion_timeout_sec=int(wait))


def _cron(seconds: float) -> str:
    """A six-field cron line firing every ``seconds`` (a divisor of 60 s,
    or whole minutes)."""
    whole = max(1, round(seconds))
    if whole < 60:
        return f"*/{whole} * * * * *"
    return f"0 */{max(1, whole // 60)} * * * *"
