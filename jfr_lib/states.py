"""Job and flow states, the named sets built on them, and the flow-state rule."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """The state of one job in the queue database."""

    WAITING = "WAITING"
    """Some parent has not completed yet."""
    READY = "READY"
    """Every parent is done: the runner may check it out."""
    CHECKED_OUT = "CHECKED_OUT"
    """Taken by the runner; the run folder is chosen."""
    UPLOADED = "UPLOADED"
    """References are resolved and ``jfr_in.json`` is in the run folder."""
    SUBMITTED = "SUBMITTED"
    """Handed to the worker's queue; the queue id is recorded."""
    RUNNING = "RUNNING"
    """The queue reports the job as running."""
    RUN_FINISHED = "RUN_FINISHED"
    """The job left the queue; its output waits to be fetched."""
    DOWNLOADED = "DOWNLOADED"
    """The output files are readable by the runner."""
    COMPLETED = "COMPLETED"
    """Outputs are in the JobStore and the response is applied."""
    FAILED = "FAILED"
    """The job raised, or its output is missing or invalid (permanent)."""
    REMOTE_ERROR = "REMOTE_ERROR"
    """A step kept failing for transient reasons until the retry budget ran out."""
    PAUSED = "PAUSED"
    """Held by the user; it will not be checked out until resumed."""
    STOPPED = "STOPPED"
    """Stopped by the flow itself (``stop_children``, ``stop_jobflow``)."""
    USER_STOPPED = "USER_STOPPED"
    """Stopped by the user."""

    def __str__(self) -> str:
        return self.value


class FlowState(str, Enum):
    """The state of a flow, derived from the states of its jobs."""

    WAITING = "WAITING"
    """No job can run yet."""
    READY = "READY"
    """Some job is READY and none has started."""
    RUNNING = "RUNNING"
    """Some job has started and the flow is not finished."""
    COMPLETED = "COMPLETED"
    """Every job is COMPLETED."""
    FAILED = "FAILED"
    """Some job is FAILED (a REMOTE_ERROR is transient: its flow stays RUNNING)."""
    PAUSED = "PAUSED"
    """Some job is PAUSED and nothing runs."""
    STOPPED = "STOPPED"
    """Some job was stopped and nothing else is left to run."""

    def __str__(self) -> str:
        return self.value


#: States in which the runner is working on a job (it holds a run folder).
RUNNING_STATES = frozenset(
    {
        JobState.CHECKED_OUT,
        JobState.UPLOADED,
        JobState.SUBMITTED,
        JobState.RUNNING,
        JobState.RUN_FINISHED,
        JobState.DOWNLOADED,
    }
)
#: States that count against a worker's ``max_jobs``.
QUEUED_STATES = frozenset(
    {JobState.CHECKED_OUT, JobState.UPLOADED, JobState.SUBMITTED, JobState.RUNNING}
)
#: States reported as errors.
ERROR_STATES = frozenset({JobState.FAILED, JobState.REMOTE_ERROR})
#: States a job never leaves without a user action.
FINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.REMOTE_ERROR,
        JobState.STOPPED,
        JobState.USER_STOPPED,
    }
)
STOPPED_STATES = frozenset({JobState.STOPPED, JobState.USER_STOPPED})
#: States of a parent that let a child with ``on_missing_references`` other than
#: ``error`` run anyway: the parent is finished and will not produce an output
#: without a user action. REMOTE_ERROR is not among them: a retry may still
#: produce the output.
DONE_STATES = frozenset({JobState.COMPLETED, JobState.FAILED}) | STOPPED_STATES
#: States in which the runner still has something to do.
ACTIVE_STATES = RUNNING_STATES | {JobState.READY}


def flow_state(states) -> FlowState:
    """Derive a flow's state from the states of its jobs.

    Parameters
    ----------
    states
        Iterable of :class:`JobState` (or their string values), one per job.

    Returns
    -------
    FlowState
        COMPLETED when all jobs are; FAILED when any job failed; RUNNING while any
        job is being worked on or waits for a retry (REMOTE_ERROR); then PAUSED,
        STOPPED, READY and WAITING.
    """
    present = {JobState(s) for s in states}
    if not present or present == {JobState.COMPLETED}:
        return FlowState.COMPLETED
    if JobState.FAILED in present:
        return FlowState.FAILED
    if present & (RUNNING_STATES | {JobState.REMOTE_ERROR}):
        return FlowState.RUNNING
    if JobState.PAUSED in present:
        return FlowState.PAUSED
    if present & STOPPED_STATES and not present & {JobState.READY}:
        return FlowState.STOPPED
    if JobState.READY in present:
        started = JobState.COMPLETED in present
        return FlowState.RUNNING if started else FlowState.READY
    if JobState.COMPLETED in present:
        return FlowState.RUNNING
    return FlowState.WAITING
