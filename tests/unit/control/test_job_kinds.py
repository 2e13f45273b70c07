"""What a job kind and a step see, without an engine: the event throttle,
cancellation reaching a registered operation, which steps may be cancelled."""

from __future__ import annotations

import threading

import pytest

from vmdr.control.jobs.kinds import (
    ACTIVE,
    CancelScope,
    JobCancelled,
    JobKind,
    JobState,
    StepContext,
    Throttle,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


Written = tuple[list[tuple[str, str, int, str | None]], Clock]


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Written:
    clock = Clock()
    monkeypatch.setattr("vmdr.control.jobs.kinds.time.monotonic", clock)
    return [], clock


def test_progress_is_at_most_one_event_per_second_per_step_and_loses_no_message(
    written: Written,
) -> None:
    events, clock = written
    t = Throttle(lambda *e: events.append(e))
    t.progress("j", "cut", 0, "quiesce exited 0: frozen")
    for i in range(50):  # a chatty loop within the same second
        t.progress("j", "cut", i, "disk 0")
    t.progress("j", "cut", 99, "thaw exited 0: thawed")
    t.progress("j", "other", 5, "another step is not held back")
    assert events == [
        ("j", "cut", 0, "quiesce exited 0: frozen"),
        ("j", "other", 5, "another step is not held back"),
    ]
    clock.now += 1.0
    t.progress("j", "cut", 100, "disk 0")
    # One event for the second that passed: every distinct message, once, and the newest bytes.
    assert events[-1] == ("j", "cut", 100, "disk 0\nthaw exited 0: thawed\ndisk 0")
    t.progress("j", "cut", 101, "last words")
    t.flush("j")  # the step ended: what waits is written
    assert events[-1] == ("j", "cut", 101, "last words")
    assert len(events) == 4


def test_a_joined_message_keeps_its_newest_part(
    written: Written,
) -> None:
    events, _ = written
    t = Throttle(lambda *e: events.append(e))
    t.progress("j", "s", 0, "first")
    for i in range(5000):
        t.progress("j", "s", i, f"line {i}")
    t.flush("j")
    message = events[-1][3]
    assert message is not None and len(message) <= Throttle.MAX_MESSAGE
    assert message.endswith("line 4999")


class Op:
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


def test_cancel_reaches_a_running_operation_and_one_that_starts_after() -> None:
    scope = CancelScope()
    ctx = StepContext("j", {}, Throttle(lambda *e: None), scope, "copy")
    running, late = Op(), Op()
    with ctx.cancellable(running):
        assert not running.cancelled.is_set()
        scope.cancel()
        assert running.cancelled.is_set()
    with ctx.cancellable(late):  # a step that starts another copy after the request
        assert late.cancelled.is_set()
    with pytest.raises(JobCancelled) as err:
        ctx.raise_if_cancelled()
    assert err.value.code == "VMDR-E0513"


def test_which_steps_may_be_cancelled() -> None:
    steps = [(f"s{i}", lambda ctx: None) for i in range(4)]
    assert all(JobKind("any", steps).may_cancel(i) for i in range(4))
    late = JobKind("late", steps, cancellable_before=1)
    assert late.may_cancel(0) and not late.may_cancel(1) and not late.may_cancel(3)
    assert late.step_names == ["s0", "s1", "s2", "s3"]


def test_job_states() -> None:
    assert [s.value for s in ACTIVE] == ["queued", "running"]
    assert JobState("running").active and not JobState.SUCCEEDED.active
    assert JobState.FAILED == "failed"  # stored and sent as the plain string


def test_job_parameters_are_checked_on_submit_and_read_back_typed() -> None:
    """Each kind's parameters fit its model or are refused with a code before
    anything is queued; a step reads them typed, a shared view (the
    recovery options) leaving the kind's other keys aside."""
    from vmdr.control.jobs.kinds import StepContext
    from vmdr.control.jobs.params import BadJobParams, OperationParams, RecoveryOptions, checked

    stored = checked("failback", OperationParams, {
        "item": "i-1", "operation": "plannedFailover", "recovery_point": 3, "mode": "olr",
        "force": False,
    })  # fmt: skip
    assert stored == {"item": "i-1", "operation": "plannedFailover", "recovery_point": 3,
                      "mode": "olr"}  # fmt: skip
    for wrong in ({"item": "i-1"}, {"item": "i-1", "operation": "x", "mode": "copy"},
                  {"item": "i-1", "operation": "x", "recovery_point": 0},
                  {"item": "i-1", "operation": "x", "favourite": 1}):  # fmt: skip
        with pytest.raises(BadJobParams) as err:
            checked("failback", OperationParams, wrong)
        assert err.value.code == "VMDR-E0522" and err.value.http_status == 422
    ctx = StepContext("job-1", stored, reporter=None)  # type: ignore[arg-type]
    assert ctx.args(OperationParams).recovery_point == 3
    options = ctx.args(RecoveryOptions)
    assert (options.mode, options.force, options.datastore) == ("olr", False, None)


def test_late_ticks_run_once_per_period_and_never_starve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fires that queued up while ticks ran slow (or no worker ran) do not
    repeat the work one after another; but however late ticks are dequeued,
    one per period still runs (a busy worker does not starve DNS routing)."""
    import datetime as dt
    from types import SimpleNamespace

    from dbos import DBOS

    from vmdr.control.jobs.runner import Runner

    monkeypatch.setattr(DBOS, "run_step", lambda _options, fn, *args: fn(*args))
    ran: list[str] = []
    store = SimpleNamespace(sessions=None)
    runner = Runner({}, store, None, {"traffic": (1.0, lambda: ran.append("x"))}, "w")  # type: ignore[arg-type]
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    runner.tick("traffic", old)  # late, but nothing ran yet: runs
    runner.tick("traffic", old + dt.timedelta(seconds=1))  # the backlog: skipped
    runner.tick("traffic", (old + dt.timedelta(seconds=2)).replace(tzinfo=None))  # naive: UTC
    assert ran == ["x"]
    runner.tick("traffic", dt.datetime.now(dt.UTC))  # on time: runs
    assert ran == ["x", "x"]
