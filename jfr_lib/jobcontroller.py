"""``JobController``: jobflow-remote's notebook API for querying and acting on jobs, over jfr.

Methods keep jobflow-remote 1.0.1's names, argument names and order, and act through
jfr's own code (:mod:`jfr_lib.control`, :mod:`jfr_lib.rerun`), so their state rules and
refusals are those of ``jfr job ...``. Jobs are selected by (all given must hold):

- ``job_ids``: a ``(uuid, index)`` pair or a list of them (a bare uuid: any index);
- ``db_ids``: jfr's db_ids, as ints or as jobflow-remote's strings of digits;
- ``flow_ids``: flow uuids, or jfr flow db_ids (jobflow-remote reads a string of
  digits there as the db_id of one of the flow's jobs);
- ``states``: :class:`~jfr_lib.states.JobState` members, jobflow-remote's, or names;
  ``BATCH_SUBMITTED`` and ``BATCH_RUNNING``, which jfr lacks, select SUBMITTED and
  RUNNING (where jfr keeps a job waiting for a pilot, and one a pilot runs);
- ``start_date``, ``end_date``: bounds of ``updated_on``, datetimes (naive ones in local
  time) or what ``--since`` takes (``"2h"``, ISO); the end is exclusive;
- ``name``: shell wildcards matching the whole name; ``metadata``: exact values, dotted
  keys reach into nested mappings; ``workers``; ``locked``: only locked jobs;
- ``custom_query``: a query of jfr's queue database (:mod:`jfr_lib.queue_db.base`), not
  a MongoDB one.

Filters that name nothing select nothing; an action given no selection at all is
refused (jobflow-remote would act on every job). Times are timezone-aware, in UTC.
"""

from __future__ import annotations

import logging
import time

from jfr_lib import control, rerun
from jfr_lib.errors import JfrError, NotFoundError, StateError, UsageError
from jfr_lib.jobinfo import (
    FlowInfo,
    InfoList,
    JobInfo,
    _dates,
    _given,
    _ids,
    _job_pairs,
    _listed,
    _merged,
    _metadata_test,
    _sort,
    _state_names,
)
from jfr_lib.states import FlowState, JobState

log = logging.getLogger(__name__)
SELECTION = ("job_ids", "db_ids", "flow_ids", "states", "start_date", "end_date", "name", "metadata",
             "workers", "custom_query", "locked")  # fmt: skip


class JobController:
    """Query and act on the jobs and flows of a project, with jobflow-remote's method names.

    Parameters
    ----------
    project
        A :class:`jfr_lib.config.Project`; :meth:`from_project_name` finds one by name.
    """

    def __init__(self, project):
        self.project = project
        self._db = self._store = None

    @classmethod
    def from_project_name(cls, project_name: str | None = None) -> JobController:
        """The controller of the project named so (None: ``$JFR_PROJECT``, or the only project)."""
        from jfr_lib.config import load_project

        return cls(load_project(project_name))

    @classmethod
    def from_project(cls, project) -> JobController:
        """The controller of a jfr ``Project``, or of the project a jobflow-remote ``Project`` names."""
        from jfr_lib.config import Project, load_project

        if isinstance(project, Project):
            return cls(project)
        if isinstance(getattr(project, "name", None), str):
            return cls(load_project(project.name))
        raise UsageError(f"project must be a Project, not {type(project).__name__}")

    @property
    def db(self):
        """The project's queue database, opened at first use."""
        if self._db is None:
            from jfr_lib.queue_db import open_queue_db

            self._db = open_queue_db(self.project)
        return self._db

    def close(self) -> None:
        """Close the queue database and the JobStore."""
        for thing in (self._db, self._store):
            if thing is not None:
                thing.close()
        self._db = self._store = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- queries -------------------------------------------------------------------------
    def _flow_uuids(self, flow_ids) -> set:
        """uuids for flow uuids and flow db_ids (ints or strings of digits)."""
        ids = _listed(flow_ids)
        digits = [i for i in ids if isinstance(i, int) or str(i).isascii() and str(i).isdigit()]
        found = self.db.find_flows({"db_id": _ids(digits, "flow_ids")}) if digits else []
        return {str(i) for i in ids if i not in digits} | {f["uuid"] for f in found}

    def _find_jobs(self, sel: dict, sort=None, limit: int = 0, skip: int = 0, count: bool = False):
        """The jobs (or their number) that a selection (the arguments named in SELECTION) selects."""
        from jfr_lib.cli.selection import text_value
        from jfr_lib.queue_db.base import JOB_COLUMNS

        query, tests = {}, []
        if _given(sel.get("db_ids")):
            query["db_id"] = _ids(sel["db_ids"], "db_ids")
        if _given(sel.get("job_ids")):
            query["uuid"], test = _job_pairs(sel["job_ids"])
            tests.append(test)
        if _given(sel.get("flow_ids")):
            query["flow_uuid"] = sorted(self._flow_uuids(sel["flow_ids"]))
        if _given(sel.get("states")):
            query["state"] = _state_names(sel["states"], JobState)
        if _given(sel.get("workers")):
            query["worker"] = [text_value(w, "workers") for w in _listed(sel["workers"])]
        if sel.get("name") is not None:
            query["name_glob"] = text_value(sel["name"], "name")
        if sel.get("locked"):
            query["locked"] = True
        if _given(sel.get("metadata")):
            tests.append(_metadata_test(sel["metadata"]))
        query = _merged({**query, **_dates(sel.get("start_date"), sel.get("end_date"))}, sel.get("custom_query"))
        if not tests:
            if count:
                return self.db.count_jobs(query)
            return self.db.find_jobs(query, sort=_sort(sort, JOB_COLUMNS), limit=limit + skip if limit else 0)[skip:]
        jobs = [j for j in self.db.find_jobs(query, sort=_sort(sort, JOB_COLUMNS)) if all(t(j) for t in tests)]
        return len(jobs) if count else jobs[skip : skip + limit if limit else None]

    def get_jobs_info(self, custom_query=None, job_ids=None, db_ids=None, flow_ids=None, states=None,
                      start_date=None, end_date=None, name=None, metadata=None, workers=None, locked=False,
                      sort=None, limit=0, skip=0) -> list[JobInfo]:  # fmt: skip
        """The jobs selected (see the module's docstring), in db_id order unless ``sort``.

        Parameters
        ----------
        custom_query, job_ids, db_ids, flow_ids, states, start_date, end_date, name, metadata, workers, locked
            What selects a job.
        sort
            pymongo's ``[(key, 1 or -1), ...]``, or one key: db_id, uuid, index, name, state,
            worker, priority, created_on, updated_on...
        limit, skip
            At most ``limit`` jobs (0: all), after leaving out the first ``skip``.

        Returns
        -------
        list of JobInfo
            A list that prints as a table.
        """
        sel = {k: v for k, v in locals().items() if k in SELECTION}
        return InfoList(map(JobInfo.from_doc, self._find_jobs(sel, sort, limit, skip)))

    def count_jobs(self, query=None, job_ids=None, db_ids=None, flow_ids=None, states=None, locked=False,
                   start_date=None, end_date=None, name=None, metadata=None, workers=None) -> int:  # fmt: skip
        """The number of jobs selected (``query`` is the ``custom_query`` of :meth:`get_jobs_info`)."""
        sel = {k: v for k, v in locals().items() if k in SELECTION}
        return self._find_jobs({**sel, "custom_query": query}, count=True)

    def get_job_info(self, job_id: str | None = None, db_id=None, job_index: int | None = None) -> JobInfo | None:
        """A job by ``db_id``, or by uuid ``job_id`` and ``job_index`` (None: the highest); None if there is none."""
        doc = self._job(job_id, db_id, job_index)
        return None if doc is None else JobInfo.from_doc(doc)

    def _job(self, job_id, db_id, job_index) -> dict | None:
        if (job_id is None) == (db_id is None):
            raise UsageError("give one of job_id and db_id")
        if db_id is not None:
            return self.db.get_job(db_id=_ids(db_id, "db_id")[0])
        return self.db.get_job(uuid=job_id, index=job_index)

    def _find_flows(self, job_ids, db_ids, flow_ids, states, start_date, end_date, name, metadata, locked,
                    query=None, sort=None, limit=0, skip=0, count=False):  # fmt: skip
        from jfr_lib.cli.selection import text_value
        from jfr_lib.queue_db.base import FLOW_COLUMNS

        built, uuids = {}, None
        for key, value in (("uuid", job_ids), ("db_id", db_ids), ("locked", locked)):
            if _given(value):
                value = _ids(value, "db_ids") if key == "db_id" else True if key == "locked" else _listed(value)
                found = {j["flow_uuid"] for j in self.db.find_jobs({key: value})}
                uuids = found if uuids is None else uuids & found
        if _given(flow_ids):
            uuids = self._flow_uuids(flow_ids) & (self._flow_uuids(flow_ids) if uuids is None else uuids)
        if uuids is not None:
            built["uuid"] = sorted(uuids)
        if _given(states):
            built["state"] = _state_names(states, FlowState)
        if name is not None:
            built["name_glob"] = text_value(name, "name")
        built = _merged({**built, **_dates(start_date, end_date)}, query)
        test = _metadata_test(metadata) if _given(metadata) else None
        if count and test is None:
            return self.db.count_flows(built)
        flows = self.db.find_flows(built, sort=_sort(sort, FLOW_COLUMNS), limit=0 if test else limit and limit + skip)
        flows = [f for f in flows if test is None or test(f)]
        return len(flows) if count else flows[skip : skip + limit if limit else None]

    def get_flows_info(self, job_ids=None, db_ids=None, flow_ids=None, states=None, start_date=None, end_date=None,
                       name=None, metadata=None, locked=False, sort=None, jobs_sort=None, limit=0, skip=0,
                       with_jobs_info=False) -> list[FlowInfo]:  # fmt: skip
        """The flows selected, in db_id order unless ``sort``, each with the ids and states of its jobs.

        Parameters
        ----------
        job_ids, db_ids
            uuids or db_ids of jobs of the flow.
        flow_ids, states, start_date, end_date, name, metadata
            As for jobs, on the flow's own fields (``states``: :class:`~jfr_lib.states.FlowState`).
        locked
            Only flows with a locked job.
        sort, jobs_sort, limit, skip
            Order of the flows, and of each flow's jobs; at most ``limit`` flows after the first ``skip``.
        with_jobs_info
            Also give each flow's jobs as :class:`JobInfo` in ``jobs_info``.

        Returns
        -------
        list of FlowInfo
            A list that prints as a table.
        """
        from jfr_lib.queue_db.base import JOB_COLUMNS

        flows = self._find_flows(job_ids, db_ids, flow_ids, states, start_date, end_date, name, metadata, locked,
                                 sort=sort, limit=limit, skip=skip)  # fmt: skip
        jobs = {}
        for job in self.db.find_jobs({"flow_uuid": [f["uuid"] for f in flows]}, sort=_sort(jobs_sort, JOB_COLUMNS)):
            jobs.setdefault(job["flow_uuid"], []).append(job)
        return InfoList(FlowInfo.from_docs(f, jobs.get(f["uuid"], []), bool(with_jobs_info)) for f in flows)

    def count_flows(self, query=None, job_ids=None, db_ids=None, flow_ids=None, states=None, start_date=None,
                    end_date=None, name=None, metadata=None, locked=False) -> int:  # fmt: skip
        """The number of flows selected (``query``: a flow query of jfr's queue database)."""
        return self._find_flows(job_ids, db_ids, flow_ids, states, start_date, end_date, name, metadata, locked,
                                query, count=True)  # fmt: skip

    def get_job_output(self, job_id: str | None = None, db_id=None, job_index: int | None = None, load=False):
        """The output a job put in the JobStore (``load``: what to load from additional stores).

        Raises
        ------
        NotFoundError
            No such job, or it has no output (yet).
        """
        from jfr_lib.jobstore import get_jobstore, read_output

        what = f"job {job_id}"
        if db_id is not None or job_id is None:
            job = self._job(job_id, db_id, job_index)
            if job is None:
                raise NotFoundError(f"no job {db_id}")
            job_id, job_index, what = job["uuid"], job["index"], f"job {job['db_id']} ({job['state']})"
        if self._store is None:
            self._store = get_jobstore(self.project)
        return read_output(self.project, self._store, job_id, job_index or "last", what, load)

    # --- actions -------------------------------------------------------------------------
    def _act(self, verb: str, act, sel: dict, raise_on_error: bool, wait=None, break_lock=False) -> list:
        """``act(job) -> db_ids changed`` on each job selected; the db_ids changed."""
        if not any(map(_given, sel.values())):
            raise UsageError(f"{verb}: select jobs with job_ids, db_ids or a filter")
        changed = []
        for job in self._find_jobs(sel):
            try:
                changed += self._patiently(job, act, wait, break_lock)
            except JfrError as exc:
                if raise_on_error:
                    raise
                log.warning("%s job %s: %s", verb, job["db_id"], exc)
        return list(dict.fromkeys(changed))

    def _patiently(self, job: dict, act, wait, break_lock: bool):
        """``act`` on the job as it is now; while a lock refuses it, again until ``wait`` seconds have passed."""
        deadline = time.monotonic() + (wait or 0)
        while True:
            job = self.db.get_job(db_id=job["db_id"])
            if job is None:
                return []  # removed meanwhile, by the rerun of a job above it
            if break_lock and job.get("lock_id"):
                self._unlock(job)
                job = self.db.get_job(db_id=job["db_id"])
            try:
                return act(job)
            except StateError:
                now = self.db.get_job(db_id=job["db_id"])
                if not (now and now.get("lock_id")) or time.monotonic() >= deadline:
                    raise
            time.sleep(min(0.5, max(0.01, deadline - time.monotonic())))

    def _unlock(self, job: dict) -> None:
        """Drop a job's lock, as ``jfr admin unlock``: refused while a runner runs (it may hold the lock)."""
        from jfr_lib import lease

        holder = lease.read(self.db)
        if lease.status(holder) == lease.RUNNING:
            raise StateError(f"break_lock: a runner is running on {holder['host']} (pid {holder['pid']}): stop it "
                             "first")  # fmt: skip
        self.db.release_job(job["db_id"], job["lock_id"])

    def rerun_jobs(self, job_ids=None, db_ids=None, flow_ids=None, states=None, start_date=None, end_date=None,
                   name=None, metadata=None, workers=None, custom_query=None, raise_on_error=True, force=False,
                   wait=None, break_lock=False) -> list:  # fmt: skip
        """Run the selected jobs again, as ``jfr job rerun``: FAILED, REMOTE_ERROR and stopped jobs
        (COMPLETED ones too with ``force``); their descendants wait for them again.

        Parameters
        ----------
        job_ids, db_ids, flow_ids, states, start_date, end_date, name, metadata, workers, custom_query
            What selects a job (see the module's docstring).
        raise_on_error
            Raise the first refusal (the CLI's message); otherwise log it and go on.
        force
            Also reset COMPLETED jobs: the job, a descendant, a job an earlier run created.
        wait
            Seconds to wait for a lock held on the job to go.
        break_lock
            Drop the job's lock first, as ``jfr admin unlock`` (refused while a runner runs).

        Returns
        -------
        list
            db_ids of the jobs rerun, and of the descendants whose state changed.
        """

        def act(job):
            before = {d["db_id"]: d.get("reruns") for d in rerun.Plan(self.db, job).reset.values()}
            rerun.rerun(self.db, job, force=force, project=self.project)
            after = self.db.find_jobs({"db_id": list(before)}) if before else []
            return [job["db_id"], *(d["db_id"] for d in after if d.get("reruns") != before[d["db_id"]])]

        sel = {k: v for k, v in locals().items() if k in SELECTION}
        return self._act("rerun", act, sel, raise_on_error, wait, break_lock)

    def delete_flows(self, flow_ids=None, max_limit: int = 10, delete_output: bool = False,
                     delete_files: bool = False, cancel_processes: bool = True, raise_on_error: bool = False,
                     wait=None, break_lock: bool = False) -> list:  # fmt: skip
        """Delete flows with all their jobs, as ``jfr flow delete``.

        Parameters
        ----------
        flow_ids
            Flow uuids or db_ids; None: every flow.
        max_limit
            Refuse to delete more flows than this (0: no limit).
        delete_output, delete_files
            Also remove the jobs' outputs from the JobStore, their run folders.
        cancel_processes
            Stop SUBMITTED and RUNNING jobs first (as ``jfr job stop``); otherwise such a flow is refused.
        raise_on_error, wait, break_lock
            As for :meth:`rerun_jobs`, for each job of a flow.

        Returns
        -------
        list
            uuids of the flows deleted.
        """
        from jfr_lib.cli.selection import get_flow_or_fail

        ids = [f["uuid"] for f in self.db.find_flows()] if flow_ids is None else _listed(flow_ids)
        if max_limit and len(ids) > max_limit:
            raise UsageError(f"delete_flows: {len(ids)} flows, more than max_limit={max_limit}: raise it to "
                             "delete them")  # fmt: skip
        deleted = []
        for fid in ids:
            try:
                flow = get_flow_or_fail(self.db, str(fid), "flow_ids")
                for job in self.db.find_jobs({"flow_uuid": flow["uuid"]}, sort=[("db_id", 1)]):
                    if cancel_processes and job["state"] in (JobState.SUBMITTED, JobState.RUNNING):
                        self._patiently(job, lambda j: control.stop(self.db, self.project, j), wait, break_lock)
                    self._patiently(job, lambda j, f=flow: control.refuse_flow_delete(f, j) or [], wait, break_lock)
                control.delete_flow(self.db, self.project, flow, self.db.find_jobs({"flow_uuid": flow["uuid"]}),
                                    output=delete_output, files=delete_files)  # fmt: skip
                deleted.append(flow["uuid"])
            except JfrError as exc:
                if raise_on_error:
                    raise
                log.warning("delete flow %s: %s", fid, exc)
        return deleted


def _action(verb: str, call, summary: str):
    """A ``<verb>_jobs`` method with jobflow-remote's arguments that calls ``call(controller, job)`` on each job."""

    def method(self, job_ids=None, db_ids=None, flow_ids=None, states=None, start_date=None, end_date=None,
               name=None, metadata=None, workers=None, custom_query=None, raise_on_error=True, wait=None,
               break_lock=False) -> list:  # fmt: skip
        sel = {k: v for k, v in locals().items() if k in SELECTION}
        return self._act(verb, lambda job: call(self, job) and [job["db_id"]], sel, raise_on_error, wait, break_lock)

    method.__name__, method.__qualname__ = f"{verb}_jobs", f"JobController.{verb}_jobs"
    method.__doc__ = (f"{summary}\n\n        Arguments as for :meth:`rerun_jobs` (but ``force``).\n\n        Returns"
                      "\n        -------\n        list\n            db_ids of the jobs changed.\n")  # fmt: skip
    return method


JobController.retry_jobs = _action("retry", lambda jc, job: control.retry(jc.db, job),
                                   "Put REMOTE_ERROR jobs back where their step failed, as ``jfr job retry``.")
JobController.pause_jobs = _action("pause", lambda jc, job: control.pause(jc.db, job),
                                   "Hold WAITING and READY jobs, as ``jfr job pause``.")
JobController.resume_jobs = _action("resume", lambda jc, job: control.resume(jc.db, job),
                                    "Release PAUSED jobs (READY, or WAITING for their parents), as ``jfr job resume``.")
JobController.stop_jobs = _action("stop", lambda jc, job: control.stop(jc.db, jc.project, job),
                                  "Stop unfinished jobs (USER_STOPPED), cancelling them in their queue, as "
                                  "``jfr job stop``.")  # fmt: skip
