"""utils/slurm.py: the Slurm $cmd, against a real one-node Slurm on localhost (tests/slurm/).

The option-mapping tests use a fake sbatch and need no cluster; the others use the
slurm_cluster fixture (tests/conftest.py), which skips them where Slurm cannot run (fails under CI).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

SLURM_PY = Path(__file__).resolve().parent.parent / "utils" / "slurm.py"


def slurm_py(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SLURM_PY), *args],
        capture_output=True, text=True, cwd=cwd, timeout=120, env=env,
    )


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def squeue_ids(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True)
    return out.stdout.split()


# ---- option mapping, with a fake sbatch (no cluster needed) -------------------------------------


@pytest.fixture
def fake_sbatch(tmp_path: Path) -> tuple[dict, Path]:
    """A PATH whose sbatch records its arguments and refuses the job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch.args"
    (bin_dir / "sbatch").write_text(
        f'#!/bin/bash\nprintf "%s\\n" "$@" > {record}\necho "sbatch: error: fake" >&2\nexit 1\n'
    )
    (bin_dir / "sbatch").chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"), record


def test_options_map_through_config(tmp_path: Path, fake_sbatch) -> None:
    env, record = fake_sbatch
    conf = tmp_path / "my.conf"
    conf.write_text(
        "# a site config\n"
        "command sbatch --export=PATH --account=speech  # every job\n"
        "option mem=* --mem $0\n"
        "option mem=0\n"
        "option num_threads=* --cpus-per-task $0\n"
        "option gpu=* -p gpu --gres=gpu:a100:$0\n"
        "option gpu=0 -p cpu\n"
        "option time=* --time $0\n"
        "option num_nodes=* --nodes $0 --ntasks-per-node 1\n"
        "option partition=* -p $0\n"
        "default gpu=0\n"
    )
    proc = slurm_py(
        tmp_path, "--config", str(conf), "--gpu", "2", "--mem", "0", "--num-threads", "4",
        "--time", "10", "--num-nodes", "2", "--max-jobs-run", "3", "JOB=1:5", "log/x.JOB.log",
        "srun", "hostname", env=env,
    )
    assert proc.returncode == 1
    assert "submission failed" in proc.stderr and "sbatch: error: fake" in proc.stderr
    args = record.read_text().splitlines()
    script = args[-1]
    assert args[0] == "--export=PATH" and args[1] == "--account=speech"
    assert "--array=1-5%3" in args and "--job-name=x" in args
    flags = " ".join(args[2:-1])
    assert "-p gpu --gres=gpu:a100:2" in flags and "-p cpu" not in flags
    assert "--cpus-per-task 4" in flags and "--time 10" in flags
    assert "--nodes 2 --ntasks-per-node 1" in flags and "--mem" not in flags
    assert script == "log/q/x.JOB.sh" and (tmp_path / script).is_file()

    # The default applies when --gpu is not given; an extra option from the config is accepted.
    proc = slurm_py(tmp_path, "--config", str(conf), "--partition", "long", "log/y.log", "true",
                    env=env)
    flags = " ".join(record.read_text().splitlines())
    assert "-p cpu -p long" in flags and "--array" not in flags


def test_option_missing_from_config_is_an_error(tmp_path: Path, fake_sbatch) -> None:
    env, record = fake_sbatch
    conf = tmp_path / "small.conf"
    conf.write_text("command sbatch\noption mem=* --mem $0\n")
    proc = slurm_py(tmp_path, "--config", str(conf), "--time", "5", "log/x.log", "true", env=env)
    assert proc.returncode == 1
    assert "option --time is not in" in proc.stderr
    assert not record.exists()  # nothing was submitted
    proc = slurm_py(tmp_path, "--no-such", "1", "log/x.log", "true", env=env)
    assert proc.returncode == 1 and "option --no-such is not in" in proc.stderr


# ---- a real Slurm ------------------------------------------------------------------------------


def test_job_array(slurm_cluster, tmp_path: Path) -> None:
    name = unique("arr")
    proc = slurm_py(
        tmp_path, "--mem", "200M", "--num-threads", "1", "--max-jobs-run", "2", "JOB=1:3",
        f"exp/log/{name}.JOB.log", "echo task JOB > out.JOB; echo omp=$OMP_NUM_THREADS",
    )
    assert proc.returncode == 0, proc.stderr
    for job in (1, 2, 3):
        assert (tmp_path / f"out.{job}").read_text() == f"task {job}\n"
        log = (tmp_path / f"exp/log/{name}.{job}.log").read_text().splitlines()
        assert log[0] == f"# echo task {job} > out.{job}; echo omp=$OMP_NUM_THREADS"
        assert re.match(r"^# Started at .+ on \S+$", log[1])
        assert "omp=1" in log
        assert re.match(r"^# Accounting: time=\d+ threads=1$", log[-2])
        assert re.match(r"^# Ended \(code 0\) at .+, elapsed time \d+ seconds$", log[-1])
    assert (tmp_path / f"exp/log/q/{name}.JOB.sh").is_file()


def test_single_job(slurm_cluster, tmp_path: Path) -> None:
    proc = slurm_py(tmp_path, "log/single.log", "echo", "one job", "|", "tr", "a-z", "A-Z")
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "log/single.log").read_text()
    assert "\nONE JOB\n" in log and log.splitlines()[-1].startswith("# Ended (code 0)")


def test_failing_task(slurm_cluster, tmp_path: Path) -> None:
    name = unique("fail")
    proc = slurm_py(tmp_path, "JOB=1:2", f"log/{name}.JOB.log", "echo trying JOB; [ JOB -ne 2 ]")
    assert proc.returncode == 1
    assert f"slurm.py: 1 / 2 failed, log is in log/{name}.2.log" in proc.stderr
    assert "FAILED" in proc.stderr and f"{name}.1.log" not in proc.stderr
    assert (tmp_path / f"log/{name}.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")


def test_scancel_is_a_failure(slurm_cluster, tmp_path: Path) -> None:
    name = unique("cancel")
    proc = subprocess.Popen(
        [sys.executable, str(SLURM_PY), "JOB=1:2", f"log/{name}.JOB.log", "echo started; sleep 3"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    log1 = tmp_path / f"log/{name}.1.log"
    wait_for(lambda: log1.exists() and "started" in log1.read_text(), "task 1 to start")
    array_id = subprocess.run(["squeue", "-h", "-n", name, "-o", "%F"], capture_output=True,
                              text=True).stdout.split()[0]
    subprocess.run(["scancel", f"{array_id}_1"], check=True)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"1 / 2 failed, log is in log/{name}.1.log" in stderr
    assert "CANCELLED" in stderr and f"{name}.2.log" not in stderr


def test_memory_beyond_the_node_fails_at_submission(slurm_cluster, tmp_path: Path) -> None:
    too_much = f"{slurm_cluster.memory_mb * 4}M"
    proc = slurm_py(tmp_path, "--mem", too_much, "log/big.log", "true")
    assert proc.returncode == 1
    assert "submission failed" in proc.stderr and "Memory specification" in proc.stderr
    assert f"--mem {too_much}" in proc.stderr


def test_sigterm_cancels_the_jobs(slurm_cluster, tmp_path: Path) -> None:
    name = unique("term")
    proc = subprocess.Popen(
        [sys.executable, str(SLURM_PY), "JOB=1:2", f"log/{name}.JOB.log", "echo started; sleep 30"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    log1 = tmp_path / f"log/{name}.1.log"
    wait_for(lambda: log1.exists() and "started" in log1.read_text(), "task 1 to start")
    assert squeue_ids(name), "the job is not in squeue"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "cancelled job" in stderr
    wait_for(lambda: not squeue_ids(name), "squeue to forget the cancelled job", timeout=20)
