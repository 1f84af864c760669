"""The README's commands stay true; the man page matches the parser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def readme_commands() -> list:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert len(commands) == 2
    assert "examples/quickstart.py" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


@pytest.mark.e2e
def test_quickstart_runs_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JFR_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               PYTHONPATH=str(ROOT))  # fmt: skip
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "config" / "jfr" / "projects" / "quickstart.yaml").exists()
    lines = proc.stdout.splitlines()
    assert any(line.split()[-2:] == ["COMPLETED", "124"] for line in lines if line.strip())
    assert any(line.split()[1:2] == ["total"] and line.split()[-1] == "24" for line in lines if line.strip())
    assert "flow COMPLETED" in proc.stdout


def test_man_page_is_current(tmp_path):
    if shutil.which("argparse-manpage") is None:
        pytest.skip("argparse-manpage is not installed")
    out = tmp_path / "jfr.1"
    subprocess.run(["bash", str(ROOT / "man" / "generate.sh"), str(out)], check=True, timeout=120)
    fresh = out.read_text().splitlines()[1:]  # the first line carries the build date
    committed = (ROOT / "man" / "jfr.1").read_text().splitlines()[1:]
    assert fresh == committed, "man/jfr.1 is stale: run man/generate.sh"


def test_wheel_installs_the_man_page_where_man_finds_it(tmp_path):
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("jfr-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # installed as PREFIX/share/man/man1/jfr.1, next to PREFIX/bin/jfr: `man jfr` looks there
    assert any(n.endswith(".data/data/share/man/man1/jfr.1") for n in names)
    assert "jfr_lib/worker.py" in names and "jfr_lib/cli/job_cmd.py" in names
