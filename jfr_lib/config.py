"""The project file: find it, read it (YAML, TOML or JSON) and turn it into typed objects.

This module finds the files (the typed objects are :mod:`jfr_lib.config_model`); reading a file is
:mod:`jfr_lib.config_load`, checking it and building the objects
:mod:`jfr_lib.config_check`. Only the standard library (and PyYAML for YAML
files) is imported: the command line loads a project on every call and must
start fast.

Errors name the file and the dotted key, one line for each problem; every
problem of a file is reported at once::

    /home/me/.config/jfr/projects/p.yaml: workers.cluster.work_dir: must be an absolute path
    /home/me/.config/jfr/projects/p.yaml: runner.heartbeat: must be a finite number
"""

from __future__ import annotations

import os
from pathlib import Path

from jfr_lib.config_model import (  # noqa: F401 (the typed objects are used from here)
    PROJECT_SUFFIXES,
    SCHEDULERS,
    WORKER_TYPES,
    ExecConfig,
    Project,
    QueueConfig,
    RunnerOptions,
    Worker,
    default_base_dir,
)
from jfr_lib.errors import ConfigError

# --- where projects live -------------------------------------------------------


def projects_dir() -> Path:
    """The folder holding project files: ``$JFR_PROJECTS_DIR`` or the user config folder."""
    env = os.environ.get("JFR_PROJECTS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_config_path("jfr") / "projects"


def project_files(folder: Path | None = None) -> dict:
    """Map project name -> file for every project file in the projects folder."""
    folder = folder or projects_dir()
    found = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix in PROJECT_SUFFIXES and p.is_file() and not p.name.startswith("."):
                found.setdefault(p.stem, p)
    return found


def find_project_file(name: str | None = None) -> Path:
    """Choose the project file: by name, by ``$JFR_PROJECT``, or the only one there is."""
    name = name or os.environ.get("JFR_PROJECT") or None
    if name and (os.sep in name or Path(name).suffix in PROJECT_SUFFIXES) and Path(name).is_file():
        return Path(name)
    files = project_files()
    if name:
        if name not in files:
            from jfr_lib.errors import NotFoundError

            known = ", ".join(files) or "none"
            raise NotFoundError(f"no project named {name!r} in {projects_dir()} (known: {known})")
        return files[name]
    if len(files) == 1:
        return next(iter(files.values()))
    if not files:
        from jfr_lib.errors import NotFoundError

        raise NotFoundError(
            f"no project file in {projects_dir()}: create one with `jfr project init NAME`"
        )
    raise ConfigError(
        f"several projects ({', '.join(files)}): choose one with -p NAME or $JFR_PROJECT"
    )


def load_project(name: str | None = None) -> Project:
    """Find and load a project (see :func:`find_project_file`)."""
    return load_project_file(find_project_file(name))




def read_mapping(path: Path) -> dict:
    """Read a YAML, TOML or JSON file into a dict (see :func:`jfr_lib.config_load.read_mapping`)."""
    from jfr_lib.config_load import read_mapping as read

    return read(Path(path))


def load_project_file(path) -> Project:
    """Read and validate one project file.

    Parameters
    ----------
    path
        The project file.

    Returns
    -------
    Project
        The typed project.

    Raises
    ------
    ConfigError
        Every problem found, one line each as ``FILE: KEY: reason`` (repeated
        keys included); or one line when the file cannot be read or parsed.
    """
    from jfr_lib.config_check import ProjectChecker
    from jfr_lib.config_load import read_mapping as read

    path = Path(path).expanduser().absolute()
    problems = []
    data = read(path, problems)
    return ProjectChecker(path, problems).project(data)
