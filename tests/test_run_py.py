"""utils/run.py: the local Kaldi $cmd (job arrays, logs, failures, parallelism, signals)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "utils" / "run.py"


def run_py(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN_PY), *args],
        capture_output=True, text=True, cwd=cwd, timeout=60, env=env,
    )


def test_job_array_substitutes_in_logs_and_command(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "JOB=1:3", "exp/log/make.JOB.log", "echo", "job", "JOB", ">", "out.JOB")
    assert proc.returncode == 0, proc.stderr
    for job in (1, 2, 3):
        assert (tmp_path / f"out.{job}").read_text() == f"job {job}\n"
        log = (tmp_path / f"exp/log/make.{job}.log").read_text().splitlines()
        assert log[0] == f"# echo job {job} > out.{job}"
        assert re.match(r"^# Started at .+ on \S+$", log[1])
        assert re.match(r"^# Accounting: time=\d+ threads=1$", log[-2])
        assert re.match(r"^# Ended \(code 0\) at .+, elapsed time \d+ seconds$", log[-1])


def test_any_variable_name_and_range(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "SPLIT=2:3", "log/x.SPLIT.log", "echo SPLIT > SPLIT.txt")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["2.txt", "3.txt"]
    assert not (tmp_path / "log/x.1.log").exists()


def test_single_job_without_job_spec(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "log/one.log", "echo", "hello world")
    assert proc.returncode == 0, proc.stderr
    assert "hello world\n" in (tmp_path / "log/one.log").read_text()


def test_failing_job_is_reported(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "JOB=1:3", "log/f.JOB.log", "echo trying JOB; [ JOB -ne 2 ]")
    assert proc.returncode == 1
    assert "run.py: 1 / 3 failed, log is in log/f.2.log" in proc.stderr
    assert "f.1.log" not in proc.stderr and "f.3.log" not in proc.stderr
    assert (tmp_path / "log/f.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")
    assert (tmp_path / "log/f.3.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")


def test_max_jobs_run_1_serializes(tmp_path: Path) -> None:
    # Each job records start and end in a shared file; serial jobs never interleave.
    proc = run_py(
        tmp_path, "--max-jobs-run", "1", "JOB=1:4", "log/s.JOB.log",
        "echo start JOB >> trace; sleep 0.1; echo end JOB >> trace",
    )
    assert proc.returncode == 0, proc.stderr
    trace = (tmp_path / "trace").read_text().split("\n")[:-1]
    assert trace == [f"{what} {job}" for job in (1, 2, 3, 4) for what in ("start", "end")]


def test_quoted_pipeline(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "log/p.log", "printf 'a\\nb\\nc\\n' | wc -l > n.txt && echo piped")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "n.txt").read_text().strip() == "3"
    assert "piped" in (tmp_path / "log/p.log").read_text()


def test_unquoted_pipe_and_argument_with_spaces(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "log/q.log", "echo", "a b", "|", "tr", "a-z", "A-Z")
    assert proc.returncode == 0, proc.stderr
    assert "\nA B\n" in (tmp_path / "log/q.log").read_text()


def test_num_threads_sets_environment(tmp_path: Path) -> None:
    proc = run_py(tmp_path, "--num-threads", "3", "--mem", "2G", "--time", "1:00:00",
                  "log/t.log", "echo omp=$OMP_NUM_THREADS mkl=$MKL_NUM_THREADS")
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "log/t.log").read_text()
    assert "omp=3 mkl=3" in log
    assert re.search(r"^# Accounting: time=\d+ threads=3$", log, re.MULTILINE)


def test_gpu_without_gpu_warns_and_runs(tmp_path: Path) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = run_py(tmp_path, "--gpu", "1", "log/g.log", "echo ran", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "GPU" in proc.stderr
    assert "ran" in (tmp_path / "log/g.log").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--memory", "4G", "log/x.log", "true"], "unknown option --memory"),
        (["--mem"], "--mem needs a value"),
        (["--num-threads", "zero", "log/x.log", "true"], "--num-threads needs an integer"),
        (["JOB=1:2", "log/x.log", "true"], "put JOB in it"),
        (["log/x.log"], "expected"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_py(tmp_path, *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith("run.py: ") and message in proc.stderr


def wait_for_pids(pid_files: list[Path]) -> list[int]:
    """The pids the jobs wrote, once they all have."""
    deadline = time.monotonic() + 20
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.monotonic() < deadline, "jobs did not start"
        time.sleep(0.05)
    return [int(p.read_text()) for p in pid_files]


def test_sigterm_kills_running_jobs(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY), "JOB=1:2", "log/k.JOB.log", "echo $$ > pid.JOB; sleep 30"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    pid_files = [tmp_path / "pid.1", tmp_path / "pid.2"]
    wait_for_pids(pid_files)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted" in stderr
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "# Ended (code 143)" in (tmp_path / "log/k.1.log").read_text()


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's zombie waits for pid 1 to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_sigkill_of_run_py_kills_its_jobs(tmp_path: Path) -> None:
    # the job and a grandchild it starts (a trainer under bash, say) must not outlive a SIGKILLed run.py
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY), "log/k.log", "sleep 60 & echo $! > child; echo $$ > pid; wait"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    pids = wait_for_pids([tmp_path / "pid", tmp_path / "child"])
    assert all(_running(pid) for pid in pids)
    proc.kill()
    proc.communicate(timeout=20)
    deadline = time.monotonic() + 20
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in pids if _running(pid)]
    for pid in survivors:  # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"jobs outlived a SIGKILLed run.py: {survivors}"
