"""Scheduler scripts and parsers (pure text), fed recorded real command output."""

from __future__ import annotations

import pytest

from jfr_lib.config import ExecConfig
from jfr_lib.errors import QueueError
from jfr_lib.queue import QueueAdapter

# `ps -o pid,user,etime,state,comm -p 4242,4243,4244,4245` on Debian 12
PS_OUTPUT = """\
    PID USER         ELAPSED S COMMAND
   4242 root           00:03 S bash
   4243 root           00:01 Z bash
   4245 root        01:02:03 S sshd
"""


def test_shell_script_puts_environment_around_the_command():
    ec = ExecConfig(name="e", modules=["gcc/12"], export={"A": 'say "hi"', "P": "/x:$PATH"},
                    pre_run="echo ec-pre", post_run="echo ec-post")  # fmt: skip
    text = QueueAdapter("shell").script("python -m jfr_lib.worker /r", "/r", resources={},
                                        exec_config=ec, pre_run="echo w-pre", post_run="echo w-post")  # fmt: skip
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("#!")
    body = lines[lines.index("echo w-pre"):]
    assert body == [
        "echo w-pre", "module purge 2>/dev/null || true", "module load gcc/12",
        'export A="say \\"hi\\""', 'export P="/x:$PATH"', "echo ec-pre", "cd /r",
        "python -m jfr_lib.worker /r", "echo ec-post", "echo w-post",
    ]  # fmt: skip


def test_slurm_script_renders_resources():
    text = QueueAdapter("slurm").script("cmd", "/r", resources={"partition": "debug", "job_name": "j1"})
    assert "#SBATCH --partition=debug" in text
    assert "#SBATCH --job-name=j1" in text
    assert "#SBATCH --output=/r/queue.out" in text


def test_bad_resource_keyword_is_a_permanent_error():
    with pytest.raises(QueueError) as err:
        QueueAdapter("slurm").script("cmd", "/r", resources={"partitionn": "debug"})
    assert not err.value.transient and "partitionn" in str(err.value)


def test_shell_submit_and_status_parsing():
    q = QueueAdapter("shell")
    assert q.parse_submit(0, "4242\n", "") == "4242"
    with pytest.raises(QueueError):
        q.parse_submit(1, "", "bash: submit.sh: No such file or directory")
    status = q.parse_status(0, PS_OUTPUT, "", ["4242", "4243", "4244", "4245"])
    assert status["4242"].active and status["4242"].running
    assert not status["4243"].active  # zombie: finished
    assert status["4244"].state == "GONE"
    assert status["4245"].state == "GONE"  # pid reused by another program
    assert q.status_command(["1", "2"]) == "ps -o pid,user,etime,state,comm -p 1,2"


DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_sge_recorded_submit_status_and_script():
    q = QueueAdapter("sge")
    # recorded from Son of Grid Engine 8.1.9 (qsub as an ordinary user, then qstat while running)
    assert q.parse_submit(0, (DATA / "sge" / "qsub.out").read_text(), "") == "1"
    status = q.parse_status(0, (DATA / "sge" / "qstat_ext.xml").read_text(), "", ["1", "7"])
    assert status["1"].running and status["7"].state == "GONE"
    script = q.script("cmd", "/runs/r1", resources={"queue": "debug", "walltime": "00:05:00"})
    assert "#$ -cwd" in script and "#$ -q debug" in script
    assert "#$ -o /runs/r1/queue.out" in script  # absolute: SGE would write them in $HOME


def test_sge_qresources_do_not_produce_pbs_select():
    from qtoolkit.core.data_objects import QResources

    q = QueueAdapter("sge")
    script = q.script("cmd", "/r", resources=QResources(job_name="x", processes=1, time_limit=120))
    assert "select" not in script and "#$ -N x" in script and "h_rt=0:2:0" in script
    with pytest.raises(QueueError, match="parallel environment"):
        q.script("cmd", "/r", resources=QResources(processes=4))


def test_pbs_parsers_and_script():
    q = QueueAdapter("pbs")
    assert q.parse_submit(0, (DATA / "pbs" / "qsub.out").read_text(), "") == "4242.pbs-server"
    ids = ["4242.pbs-server", "4243.pbs-server", "4299.pbs-server"]
    status = q.parse_status(0, (DATA / "pbs" / "qstat_f.txt").read_text(), "", ids)
    assert status["4242.pbs-server"].running
    assert status["4243.pbs-server"].active and not status["4243.pbs-server"].running
    assert status["4299.pbs-server"].state == "GONE"
    script = q.script("cmd", "/r", resources={"queue": "workq", "walltime": "01:00:00", "job_name": "j"})
    assert "#PBS -q workq" in script and "#PBS -l walltime=01:00:00" in script and "#PBS -N j" in script


def test_per_user_submit_limit_is_transient_and_marked():
    q = QueueAdapter("slurm")
    with pytest.raises(QueueError) as err:
        q.parse_submit(1, "", "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job "
                              "submission failed: Job violates accounting/QOS policy")  # fmt: skip
    assert err.value.transient and err.value.limit
    with pytest.raises(QueueError) as err:
        q.parse_submit(1, "", "sbatch: error: invalid partition specified: nope")
    assert not err.value.transient and not err.value.limit


def test_sge_accounting_tells_time_limit_and_cancel():
    q = QueueAdapter("sge")
    assert q.detail_command("3") == "qacct -j 3"
    # recorded: qacct -j after an h_rt kill and after a qdel
    assert q.parse_detail(0, (DATA / "sge" / "qacct_h_rt.txt").read_text(), "") == "TIMEOUT"
    assert q.parse_detail(0, (DATA / "sge" / "qacct_qdel.txt").read_text(), "") == "CANCELLED"
    assert q.parse_detail(1, "", "error: job id 99 not found") is None


@pytest.mark.parametrize("path", ["/usr/bin:/bin", "/nonexistent"], ids=["pkill", "proc-walk"])
def test_shell_cancel_terminates_the_script_and_the_job_it_runs(path):
    """`jfr job stop` of a shell job: the script's children (the worker) get SIGTERM too,
    with pkill or, where it is missing, by walking /proc from the shell."""
    import os
    import signal
    import subprocess

    from conftest import children_of, gone, wait_for

    script = subprocess.Popen(["bash", "-c", "sleep 300; true"], start_new_session=True)
    try:
        (job,) = wait_for(lambda: children_of(script.pid), 10, message="the job process")
        cancel = QueueAdapter("shell").cancel_command(str(script.pid))
        result = subprocess.run(["/bin/bash", "-c", cancel], env={"PATH": path}, timeout=10)
        assert result.returncode == 0
        wait_for(lambda: gone(job), 10, message="the job process to end")
        script.wait(timeout=10)  # TERMed, or already finished once its job was gone
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()


def test_exported_values_expand_variables_and_nothing_else(tmp_path):
    import subprocess

    marker = tmp_path / "ran"
    hostile = f"`touch {marker}` $(touch {marker}) \"'; touch {marker}; '\" \\ $1 $ ${{HOME}}/x"
    ec = ExecConfig(export={"PATH": "/opt/x/bin:$PATH", "VALUE": hostile}, modules=[])
    script = QueueAdapter("shell").script('printf "%s\\n%s\\n" "$PATH" "$VALUE"', str(tmp_path), exec_config=ec)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/home/u"}).stdout.splitlines()  # fmt: skip
    assert out[0] == "/opt/x/bin:/usr/bin:/bin"  # $PATH still expands, as users write it
    assert out[1] == hostile.replace("${HOME}", "/home/u")  # the rest is text
    assert not marker.exists()


@pytest.mark.parametrize(("export", "resources", "message"), [
    ({"BAD NAME": "x"}, None, "is not a variable name"),
    ({"X;id": "x"}, None, "is not a variable name"),
    ({}, {"job_name": "x\n#SBATCH --partition=other"}, "line break"),
])  # fmt: skip
def test_what_would_inject_lines_is_refused(export, resources, message):
    with pytest.raises(QueueError, match=message) as info:
        QueueAdapter("slurm").script("true", "/r", resources=resources, exec_config=ExecConfig(export=export))
    assert info.value.transient is False


def test_the_script_records_its_queue_id_and_keeps_its_files_private(tmp_path):
    import subprocess

    from jfr_lib.rundir import QUEUE_ID_FILE

    script = QueueAdapter("shell").script("echo hi > out.txt", str(tmp_path))
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path)
    assert proc.wait(timeout=30) == 0
    assert (tmp_path / QUEUE_ID_FILE).read_text().strip() == str(proc.pid)  # the shell queue's id is the pid
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o600
