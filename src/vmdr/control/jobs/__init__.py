"""Jobs: what a job is (``kinds``, re-exported here: light, the CLI uses its
states), its public record and lock (``store``: the database), the engine
that runs it on DBOS Transact (``engine``) and worker leases (``workers``).
Import those three only where a job is stored, submitted or run."""

from vmdr.control.jobs.kinds import (
    ACTIVE,
    CancelScope,
    Flow,
    JobCancelled,
    JobConflict,
    JobKind,
    JobState,
    JobUnknown,
    NotCancellable,
    NotRetryable,
    StepContext,
)

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
    "StepContext",
]
