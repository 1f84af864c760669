"""jfr: run jobflow workflows on workstations, SSH hosts and HPC clusters.

The public Python API is imported lazily, so ``import jfr_lib`` (and the
command line) stays fast::

    from jfr_lib import submit_flow, set_run_config, get_jobstore, ExecutionConfig, JobController
"""

__version__ = "0.1.0"

__all__ = ["submit_flow", "set_run_config", "get_jobstore", "load_project", "ExecutionConfig", "JobController",
           "__version__"]


def __getattr__(name):
    if name in ("submit_flow", "set_run_config"):
        from jfr_lib import submit

        return getattr(submit, name)
    if name == "get_jobstore":
        from jfr_lib.jobstore import get_jobstore

        return get_jobstore
    if name == "ExecutionConfig":  # the fields of jobflow-remote's class of that name
        from jfr_lib.config import ExecConfig

        return ExecConfig
    if name == "load_project":
        from jfr_lib.config import load_project

        return load_project
    if name == "JobController":  # jobflow-remote's notebook API
        from jfr_lib.jobcontroller import JobController

        return JobController
    raise AttributeError(f"module 'jfr_lib' has no attribute {name!r}")
