"""What to tell the queue system, through qtoolkit: pure text in, text out.

Nothing here runs a process: the actions run the commands this module builds
on a host and hand the results back to be parsed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from jfr_lib.errors import QueueError
from jfr_lib.rundir import QUEUE_ERR, QUEUE_ID_FILE, QUEUE_OUT, SCRIPT_NAME

#: What a running script knows as its queue id, per scheduler.
QUEUE_ID_VARIABLE = {"shell": "$$", "slurm": "$SLURM_JOB_ID", "sge": "$JOB_ID", "pbs": "$PBS_JOBID"}

#: qtoolkit QState names that mean "still in the queue".
ACTIVE = {"QUEUED", "QUEUED_HELD", "RUNNING", "SUSPENDED", "REQUEUED"}
#: Words of a refused submission that mean "too many jobs of yours right now".
LIMIT_WORDS = ("maxsubmitjob", "qosmaxsubmit", "assocmaxsubmit", "submit limit", "job limit",
               "would exceed", "too many jobs", "maximum number of jobs")  # fmt: skip
#: Queue states of a job that ended without finishing its work, and what they mean.
ENDED_BADLY = {
    "TIMEOUT": "killed by the queue: time limit reached",
    "CANCELLED": "cancelled in the queue (scancel/qdel from outside jfr, or an administrator)",
    "NODE_FAIL": "its node failed",
    "OUT_OF_MEMORY": "killed by the queue: out of memory",
    "PREEMPTED": "preempted by the queue",
    "DEADLINE": "killed by the queue: deadline reached",
    "BOOT_FAIL": "its node failed to boot",
}


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: ``$NAME`` and ``${NAME}``: what an exported value may still expand.
_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")


def export_line(key: str, value) -> str:
    """``export KEY="VALUE"`` in which only ``$NAME``/``${NAME}`` expand.

    Users write ``PATH: /opt/x/bin:$PATH``; a ``$(...)``, a backquote or a quote in
    a value must stay text, never run on the worker.

    Raises
    ------
    QueueError
        The key is not a shell variable name (permanent).
    """
    if not _NAME.match(str(key)):
        raise QueueError(f"exec_config export {key!r} is not a variable name", transient=False)
    value, out, pos = str(value), [], 0
    for match in _VARIABLE.finditer(value):
        out += [re.sub(r'([\\"$`])', r"\\\1", value[pos : match.start()]), match.group()]
        pos = match.end()
    out.append(re.sub(r'([\\"$`])', r"\\\1", value[pos:]))
    return f'export {key}="{"".join(out)}"'


def _check_resources(options) -> None:
    """Refuse resource values that would add lines to the script's header."""
    values = options.items() if isinstance(options, dict) else vars(options).items()
    for key, value in values:
        if any(ch in str(value) for ch in "\n\r") and not isinstance(value, (dict, list)):
            raise QueueError(f"resource {key}: a value with a line break would add lines to the script",
                             transient=False)  # fmt: skip
        if isinstance(value, dict):
            _check_resources(value)


@dataclass
class JobStatus:
    """What the queue says of one job: ``QUEUED``, ``RUNNING``, ... or ``GONE``."""

    queue_id: str
    state: str
    reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def _io(scheduler_type: str):
    if scheduler_type == "shell":
        from qtoolkit.io.shell import ShellIO

        return ShellIO(stdout_path=QUEUE_OUT, stderr_path=QUEUE_ERR)
    if scheduler_type == "slurm":
        from qtoolkit.io.slurm import SlurmIO

        return SlurmIO()
    if scheduler_type == "pbs":
        from qtoolkit.io.pbs import PBSIO

        return PBSIO()
    if scheduler_type == "sge":
        from qtoolkit.io.sge import SGEIO

        return SGEIO()
    raise QueueError(f"unknown scheduler_type {scheduler_type!r}", transient=False)


class QueueAdapter:
    """Scripts, commands and parsers for one scheduler type.

    Parameters
    ----------
    scheduler_type
        ``shell``, ``slurm``, ``pbs`` or ``sge``.
    """

    def __init__(self, scheduler_type: str):
        self.scheduler_type = scheduler_type
        self.io = _io(scheduler_type)

    def script(self, command: str, run_dir: str, resources=None, exec_config=None,
               pre_run=None, post_run=None) -> str:  # fmt: skip
        """The submission script: scheduler header, environment, the command.

        Parameters
        ----------
        command
            The worker command.
        run_dir
            Folder the job runs in.
        resources
            Mapping of scheduler keywords or a qtoolkit ``QResources``.
        exec_config
            :class:`jfr_lib.config.ExecConfig` (or None).
        pre_run, post_run
            The worker's own shell lines.
        """
        from qtoolkit.core.data_objects import QResources

        options = resources
        if isinstance(resources, dict) and resources.get("@class") == "QResources":
            options = QResources.from_dict(resources)
        if isinstance(options, QResources) and self.scheduler_type == "sge":
            options = self._sge_options(options)
        if isinstance(options, dict):
            options = dict(options)
            if self.scheduler_type != "shell":
                # absolute: SGE starts jobs in $HOME unless told otherwise
                options.setdefault("qout_path", f"{run_dir}/{QUEUE_OUT}")
                options.setdefault("qerr_path", f"{run_dir}/{QUEUE_ERR}")
            if self.scheduler_type == "sge":
                options.setdefault("cwd", "")  # "#$ -cwd": run in the submission folder
        elif isinstance(options, QResources) and self.scheduler_type != "shell":
            options.output_filepath = options.output_filepath or f"{run_dir}/{QUEUE_OUT}"
            options.error_filepath = options.error_filepath or f"{run_dir}/{QUEUE_ERR}"
        if options is not None:
            _check_resources(options)
        # private files (pre_run may say otherwise); the queue id, found in the run folder
        # even when the runner was killed before recording it
        lines = ["umask 077", f"printf '%s\\n' \"{QUEUE_ID_VARIABLE[self.scheduler_type]}\" > "
                 f"{shlex.quote(f'{run_dir}/{QUEUE_ID_FILE}')}"]  # fmt: skip
        if pre_run:
            lines.append(pre_run.rstrip())
        if exec_config is not None:
            if exec_config.modules:
                lines.append("module purge 2>/dev/null || true")
                lines += [f"module load {shlex.quote(str(m))}" for m in exec_config.modules]
            lines += [export_line(key, value) for key, value in exec_config.export.items()]
            if exec_config.pre_run:
                lines.append(exec_config.pre_run.rstrip())
        lines += [f"cd {shlex.quote(run_dir)}", command]
        if exec_config is not None and exec_config.post_run:
            lines.append(exec_config.post_run.rstrip())
        if post_run:
            lines.append(post_run.rstrip())
        try:
            return self.io.get_submission_script(lines, options) + "\n"
        except (ValueError, TypeError, KeyError) as exc:
            raise QueueError(f"bad resources: {' '.join(str(exc).split())}", transient=False) from None

    def _sge_options(self, resources) -> dict:
        """QResources for real SGE: qtoolkit writes the PBS-only ``-l select=...``, which qsub
        refuses ("unknown resource select"); drop it, and ask for a parallel environment
        explicitly when more than one process is wanted."""
        options = self.io.check_convert_qresources(resources)
        options.pop("select", None)
        if (resources.processes or 1) > 1 and "model" not in options:
            raise QueueError("SGE needs a parallel environment for several processes: give resources "
                             "as a mapping with model: '<pe name> <slots>'", transient=False)  # fmt: skip
        return options

    def submit_command(self, script: str = SCRIPT_NAME) -> str:
        """The command that submits ``script`` (run it from the run folder)."""
        return self.io.get_submit_cmd(script)

    def parse_submit(self, exit_code: int, stdout: str, stderr: str) -> str:
        """The queue id from the output of the submit command.

        Raises
        ------
        QueueError
            Submission failed (``transient`` tells whether retrying may help).
        """
        result = self.io.parse_submit_output(exit_code, stdout, stderr)
        if result.job_id:
            return str(result.job_id)
        text = " ".join((stderr or stdout or "no output").split())
        if any(word in text.lower().replace(" ", "") or word in text.lower() for word in LIMIT_WORDS):
            raise QueueError(f"the queue refused more jobs for now: {text[:300]}", transient=True, limit=True)
        permanent = any(s in text.lower() for s in ("invalid", "unknown", "not exist", "rejected", "unrecognized"))
        raise QueueError(f"submission failed (exit {exit_code}): {text[:300]}", transient=not permanent)

    def status_command(self, queue_ids, user: str | None = None) -> str:
        """One command that reports on all of ``queue_ids``."""
        ids = [str(i) for i in queue_ids]
        if self.scheduler_type == "shell":
            return f"ps -o pid,user,etime,state,comm -p {','.join(ids)}"
        return self.io.get_jobs_list_cmd(ids, user)

    def parse_status(self, exit_code: int, stdout: str, stderr: str, queue_ids) -> dict:
        """queue id -> :class:`JobStatus` for each asked id (``GONE`` when absent)."""
        from qtoolkit.core.exceptions import CommandFailedError, OutputParsingError

        try:
            jobs = self.io.parse_jobs_list_output(exit_code, stdout, stderr)
        except (CommandFailedError, OutputParsingError, TypeError, ValueError, KeyError) as exc:
            raise QueueError(f"queue status failed: {' '.join(str(exc).split())[:300]}") from None
        seen = {}
        for qjob in jobs:
            state = qjob.state.name if qjob.state is not None else "UNKNOWN"
            if self.scheduler_type == "shell" and qjob.name not in ("bash", "sh", "nohup"):
                continue  # the pid was reused by an unrelated process
            seen[str(qjob.job_id)] = JobStatus(str(qjob.job_id), state)
        return {str(i): seen.get(str(i), JobStatus(str(i), "GONE")) for i in queue_ids}

    def detail_command(self, queue_id) -> str | None:
        """A command telling how a job that left the queue ended (None: not available)."""
        if self.scheduler_type == "shell":
            return None
        if self.scheduler_type == "sge":
            return f"qacct -j {queue_id}"  # qstat forgets finished jobs; accounting does not
        return self.io.get_job_cmd(str(queue_id))

    def parse_detail(self, exit_code: int, stdout: str, stderr: str) -> str | None:
        """The scheduler's own final state of a job (``TIMEOUT``, ``CANCELLED``...), if known."""
        if self.scheduler_type == "sge":
            return _sge_accounting_state(exit_code, stdout)
        try:
            qjob = self.io.parse_job_output(exit_code, stdout, stderr)
        except Exception:  # the job was purged from the queue's memory: nothing to say
            return None
        if qjob is None or qjob.sub_state is None:
            return None
        name = getattr(qjob.sub_state, "name", str(qjob.sub_state))
        return name.split(".")[-1].upper()

    def cancel_command(self, queue_id) -> str:
        if self.scheduler_type == "shell":
            # the job is the script's child: TERM it too (the worker then writes why it
            # stopped), rather than SIGKILL the script alone and leave the job running
            pid = int(queue_id)
            children = (f"if command -v pkill >/dev/null; then pkill -TERM -P {pid}; "
                        f"else for s in /proc/[0-9]*/stat; do read -r c _ _ pp _ < \"$s\" && "
                        f"[ \"$pp\" = {pid} ] && kill -TERM \"$c\"; done; fi")  # fmt: skip
            return f"{{ {children}; }} 2>/dev/null; kill -TERM {pid}"
        return self.io.get_cancel_cmd(str(queue_id))


def _sge_accounting_state(exit_code: int, stdout: str) -> str | None:
    """Read ``qacct -j`` output: how an SGE job ended."""
    if exit_code != 0:
        return None  # not written yet, or already rotated away
    fields = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    failed = fields.get("failed", "0").split(":")[0].strip()
    exit_status = fields.get("exit_status", "0").split()[0] if fields.get("exit_status") else "0"
    if failed == "37" or "h_rt" in fields.get("failed", ""):
        return "TIMEOUT"
    if failed == "100" and exit_status == "137":
        return "CANCELLED"
    if failed not in ("0", ""):
        return "FAILED"
    return "COMPLETED"
