#!/usr/bin/env python3
"""Run a command (or an array of jobs) on a Slurm cluster: the Kaldi ``$cmd`` contract, like slurm.pl.

Usage (the command line of utils/run.py; put it in cmd.sh and the recipes go to the cluster):
    utils/slurm.py exp/log/prepare.log local/prepare.sh data/
    utils/slurm.py --mem 8G --num-threads 4 JOB=1:50 exp/x/log/decode.JOB.log \\
        python -m serac.bin.decode --split JOB --num-splits 50
    utils/slurm.py --gpu 1 --time 2-00:00:00 exp/x/log/train.log python -m serac.bin.train ...
    utils/slurm.py --gpu 4 --num-nodes 2 exp/x/log/train.log srun python -m serac.bin.train ...
    utils/slurm.py --config conf/my_slurm.conf --max-jobs-run 10 JOB=1:200 log/x.JOB.log ...

Options:
    --mem 4G, --num-threads N, --gpu N, --time T, --num-nodes N
                       mapped to sbatch flags by the config file (see below)
    --max-jobs-run N   at most N tasks of the array run at once (sbatch --array=1-M%N)
    --config FILE      the option mapping; default local/slurm.conf at the top of serac (next to
                       utils/), or the built-in one below if that file does not exist
    --NAME VALUE       any other option that the config file has an ``option NAME=...`` line for

``JOB=1:N`` becomes one ``sbatch --array=1-N`` job; without it one plain job is submitted. Each
job runs a script written to ``<logdir>/q/`` that cds to the current directory, sources
./path.sh if there is one (as Kaldi's queue.pl does), sets OMP_NUM_THREADS / MKL_NUM_THREADS, and
runs the command with bash, writing the log exactly like utils/run.py (``# Ended (code N)`` last).
Slurm's own messages for a task (e.g. "CANCELLED ... DUE TO TIME LIMIT") go to
``<logdir>/q/<name>.<task>.out``.

slurm.py waits for its jobs by polling squeue (every second), then judges each task by its log:
a task whose log does not end with ``# Ended (code 0)`` failed; Slurm's state for it (CANCELLED,
TIMEOUT, OUT_OF_MEMORY, FAILED, ...) is read with ``scontrol show job`` and printed with the log.
Exit status 0 if every task succeeded, else 1. On SIGINT (Ctrl-C) or SIGTERM it scancels its jobs
and exits 130 / 143. With ``--num-nodes N`` (N > 1) the job gets N nodes and the command runs once,
on the first node: the command itself must start its work on every node, e.g. with ``srun``.

Config file lines (Kaldi's slurm.pl format; ``$0`` is the option's value):
    command sbatch --export=PATH            # the submit command and flags used for every job
    option mem=* --mem $0                   # --mem V adds "--mem V"
    option mem=0                            # --mem 0 adds nothing (an exact value wins over *)
    option max_jobs_run=*                   # accepted, adds nothing
    default gpu=0                           # applied when --gpu is not given
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

sys.dont_write_bytecode = True  # no __pycache__ in utils/ from importing run.py
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from run import (  # noqa: E402  (run.py sits next to this file; standard library only)
    CmdLine,
    UsageError,
    Interrupted,
    parse_cmdline,
)

PROG = "slurm.py"
TOP = Path(os.path.realpath(__file__)).parent.parent
DEFAULT_CONFIG_FILE = TOP / "local" / "slurm.conf"
DEFAULT_CONFIG = """\
command sbatch --export=PATH
option name=*
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option max_jobs_run=*
option gpu=* -p gpu --gres=gpu:$0 --time 4:0:0
option gpu=0
option time=* --time $0
option num_nodes=* --nodes $0 --ntasks-per-node 1
default gpu=0
"""
POLL_SECONDS = 1.0
LOG_WAIT_SECONDS = 10.0  # how long a finished task's log may lag behind (NFS attribute caches)
ACTIVE_STATES = {
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
}
# Pending reasons that mean "never" rather than "later": worth telling the user about.
HOPELESS_REASONS = {
    "PartitionTimeLimit", "PartitionNodeLimit", "PartitionConfig", "PartitionDown",
    "PartitionInactive", "ReqNodeNotAvail", "InvalidAccount", "InvalidQOS", "AssocMaxJobsLimit",
    "QOSMaxMemoryPerJob", "BadConstraints", "DependencyNeverSatisfied", "JobHeldAdmin",
    "JobHeldUser", "AccountNotAllowed",
}
_ENDED = re.compile(r"^# Ended \(code (-?\d+)\)", re.MULTILINE)


@dataclass
class SlurmConfig:
    """A parsed Kaldi-style slurm.conf."""

    path: str
    command: list[str] = field(default_factory=lambda: ["sbatch"])
    exact: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    wildcard: dict[str, list[str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)

    def knows(self, name: str) -> bool:
        return name in self.wildcard or any(n == name for n, _ in self.exact)

    def flags(self, name: str, value: str) -> list[str]:
        """The sbatch flags for ``--name value``; UsageError if the config does not allow it."""
        if (name, value) in self.exact:
            return list(self.exact[(name, value)])
        if name in self.wildcard:
            return [arg.replace("$0", value) for arg in self.wildcard[name]]
        allowed = sorted(v for n, v in self.exact if n == name)
        if allowed:
            raise UsageError(
                f"--{name.replace('_', '-')} {value}: {self.path} only allows {', '.join(allowed)}"
            )
        raise UsageError(
            f"option --{name.replace('_', '-')} is not in {self.path} "
            f"(add a line like 'option {name}=* --{name.replace('_', '-')} $0')"
        )


def parse_config(text: str, path: str) -> SlurmConfig:
    config = SlurmConfig(path=path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        where = f"{path}:{number}"
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"{where}: {e}: {raw}")
        kind, args = words[0], words[1:]
        if kind == "command":
            if not args:
                raise UsageError(f"{where}: 'command' needs the submit command: {raw}")
            config.command = args
        elif kind in ("option", "default"):
            if not args or "=" not in args[0]:
                raise UsageError(f"{where}: expected '{kind} name=value ...': {raw}")
            name, value = args[0].split("=", 1)
            if kind == "default":
                if len(args) > 1:
                    raise UsageError(f"{where}: 'default' takes only name=value: {raw}")
                config.defaults[name] = value
            elif value == "*":
                config.wildcard[name] = args[1:]
            else:
                config.exact[(name, value)] = args[1:]
        else:
            raise UsageError(f"{where}: unknown line type '{kind}' (command, option, default): {raw}")
    return config


def load_slurm_conf(path: str | None) -> SlurmConfig:
    if path is not None:
        try:
            return parse_config(Path(path).read_text(), path)
        except OSError as e:
            raise UsageError(f"cannot read --config {path}: {e.strerror}")
    if DEFAULT_CONFIG_FILE.is_file():
        return parse_config(DEFAULT_CONFIG_FILE.read_text(), str(DEFAULT_CONFIG_FILE))
    return parse_config(DEFAULT_CONFIG, "(built-in slurm.conf)")


def sbatch_flags(cmd: CmdLine, config: SlurmConfig) -> list[str]:
    """The flags the config maps its defaults and then the given options to (sbatch: last wins)."""
    given = {k: v for k, v in cmd.given.items() if k != "config"}
    options = {k: v for k, v in config.defaults.items() if k not in given}
    options.update(given)
    flags: list[str] = []
    for name, value in options.items():
        if name == "max_jobs_run" and not config.knows(name):
            continue  # slurm.py implements it (--array=...%N) whether or not the config lists it
        flags += config.flags(name, value)
    return flags


def job_name(cmd: CmdLine) -> str:
    name = os.path.basename(cmd.log)
    if cmd.jobs.var:
        name = name.replace(cmd.jobs.var, "")
    name = re.sub(r"\.log$", "", name)
    name = re.sub(r"\.\.+", ".", name).strip(".")
    return name or "job"


def queue_dir(cmd: CmdLine) -> Path:
    """<logdir>/q, where <logdir> is the log's directory up to any part naming the JOB variable."""
    parts = Path(cmd.log).parent.parts
    if cmd.jobs.var:
        keep = []
        for part in parts:
            if cmd.jobs.var in part:
                break
            keep.append(part)
        parts = tuple(keep)
    return Path(*parts, "q") if parts else Path("q")


def job_script(cmd: CmdLine, submit: list[str]) -> str:
    """The bash script every task runs; it writes the log the way utils/run.py does."""
    threads = cmd.options.num_threads
    var = cmd.jobs.var
    lines = [
        "#!/bin/bash",
        f"# Written by utils/slurm.py at {time.strftime('%Y-%m-%d %H:%M:%S')}; submitted with:",
        f"#   {' '.join(shlex.quote(a) for a in submit)}",
        f"cd {shlex.quote(os.getcwd())} || exit 1",
        "[ -f ./path.sh ] && . ./path.sh",
        f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads}",
        f"task=${{SLURM_ARRAY_TASK_ID:-{cmd.jobs.start}}}",
        f"command={shlex.quote(cmd.command)}",
        f"log={shlex.quote(cmd.log)}",
    ]
    if var:
        lines += [f'command="${{command//{var}/$task}}"', f'log="${{log//{var}/$task}}"']
    lines += [
        'mkdir -p "$(dirname "$log")" || exit 1',
        "{",
        "  printf '%s\\n' \"$command\" | sed 's/^/# /'",
        '  echo "# Started at $(date) on $(hostname)"',
        '} > "$log" || exit 1',
        "start=$(date +%s)",
        'bash -c "$command" >> "$log" 2>&1 < /dev/null',
        "rc=$?",
        "elapsed=$(( $(date +%s) - start ))",
        f'echo "# Accounting: time=$elapsed threads={threads}" >> "$log"',
        'echo "# Ended (code $rc) at $(date), elapsed time $elapsed seconds" >> "$log"',
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"


def _expand_task_ids(spec: str) -> list[int]:
    """'3' / '3-5%2' / '1,4-6' -> task ids."""
    ids: list[int] = []
    for piece in spec.split("%")[0].split(","):
        if "-" in piece:
            a, b = piece.split("-", 1)
            ids += range(int(a), int(b) + 1)
        elif piece.isdigit():
            ids.append(int(piece))
    return ids


def scontrol_states(job_id: str) -> dict[int | None, dict[str, str]]:
    """Task id (None for a plain job) -> scontrol fields (JobState, Reason, ExitCode, ...)."""
    try:
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode != 0:
        return {}
    states: dict[int | None, dict[str, str]] = {}
    for line in out.stdout.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
        if "JobState" not in fields:
            continue
        if "ArrayTaskId" in fields:
            for task in _expand_task_ids(fields["ArrayTaskId"]):
                states[task] = fields
        else:
            states[None] = fields
    return states


def read_exit_code(log: str) -> int | None:
    """The code of the last ``# Ended (code N)`` line of a log, or None."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    codes = _ENDED.findall(tail)
    return int(codes[-1]) if codes else None


class SlurmRun:
    """One submission: submit, wait, judge, and cancel on a signal."""

    def __init__(self, cmd: CmdLine, config: SlurmConfig):
        self.cmd = cmd
        self.config = config
        self.job_id: str | None = None
        self.qdir = queue_dir(cmd)
        self.name = job_name(cmd)
        self.array = cmd.jobs.var is not None

    def submit(self) -> None:
        cmd = self.cmd
        self.qdir.mkdir(parents=True, exist_ok=True)
        for index in cmd.jobs.indices:
            log = Path(cmd.jobs.substitute(cmd.log, index))
            log.parent.mkdir(parents=True, exist_ok=True)
            # A stale log ending "Ended (code 0)" would pass a task that never ran.
            log.unlink(missing_ok=True)
        base = re.sub(r"\.log$", "", os.path.basename(cmd.log))
        script = self.qdir / f"{base}.sh"
        if not self.array:
            out = self.qdir / f"{base}.out"
        elif cmd.jobs.var in base:
            out = self.qdir / f"{base.replace(cmd.jobs.var, '%a')}.out"
        else:
            out = self.qdir / f"{base}.%a.out"
        submit = list(self.config.command) + [
            "--parsable",
            f"--job-name={self.name}",
            f"--output={os.path.abspath(out)}",
        ]
        if self.array:
            throttle = f"%{cmd.options.max_jobs_run}" if cmd.options.max_jobs_run else ""
            submit.append(f"--array={cmd.jobs.start}-{cmd.jobs.end}{throttle}")
        submit += sbatch_flags(cmd, self.config)
        submit.append(str(script))
        script.write_text(job_script(cmd, submit))
        script.chmod(0o755)
        # Signals wait until the job id is known, so that an interrupt can always scancel it.
        blocked = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            proc = subprocess.run(submit, capture_output=True, text=True)
            if proc.returncode == 0:
                self.job_id = proc.stdout.strip().split(";")[0]
        except OSError as e:
            raise UsageError(f"cannot run {submit[0]}: {e.strerror} (is Slurm installed here?)")
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        if proc.returncode != 0 or not self.job_id:
            message = (proc.stderr.strip() or proc.stdout.strip()).replace("\n", "\n  ")
            raise UsageError(
                f"submission failed (exit code {proc.returncode}):\n  {message}\n"
                f"  command: {' '.join(shlex.quote(a) for a in submit)}"
            )

    def wait(self) -> None:
        """Poll squeue until none of our tasks is pending or running."""
        assert self.job_id
        delay, warned, failures = 0.25, set(), 0
        while True:
            proc = subprocess.run(
                ["squeue", "-h", "-r", "-j", self.job_id, "-o", "%i|%T|%r"],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                if "Invalid job id" in proc.stderr:
                    return  # already purged from the controller: finished long ago
                failures += 1
                if failures in (10, 60) or failures % 300 == 0:
                    print(f"{PROG}: squeue keeps failing ({proc.stderr.strip()}); still waiting "
                          f"for job {self.job_id}", file=sys.stderr)
            else:
                failures = 0
                rows = [line.split("|") for line in proc.stdout.splitlines() if line.count("|") == 2]
                active = [r for r in rows if r[1] in ACTIVE_STATES]
                if not active:
                    return
                for task, state, reason in active:
                    if state == "PENDING" and reason in HOPELESS_REASONS and reason not in warned:
                        warned.add(reason)
                        print(f"{PROG}: WARNING: job {task} is pending with reason {reason}; "
                              "it may never start (check the options / local/slurm.conf)",
                              file=sys.stderr)
            time.sleep(delay)
            delay = min(POLL_SECONDS, delay * 2)

    def cancel(self) -> None:
        if self.job_id:
            subprocess.run(["scancel", self.job_id], capture_output=True)

    def failures(self) -> list[tuple[str, str]]:
        """(log, why) for each failed task."""
        cmd = self.cmd
        states = scontrol_states(self.job_id) if self.job_id else {}
        logs = {i: cmd.jobs.substitute(cmd.log, i) for i in cmd.jobs.indices}
        codes = {i: read_exit_code(log) for i, log in logs.items()}
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while time.monotonic() < deadline:
            lagging = [
                i for i, c in codes.items()
                if c is None and states.get(i if self.array else None, {}).get("JobState")
                in (None, "COMPLETED")
            ]
            if not lagging:
                break
            time.sleep(0.5)
            for i in lagging:
                codes[i] = read_exit_code(logs[i])
        failed = []
        for i in cmd.jobs.indices:
            if codes[i] == 0:
                continue
            fields = states.get(i if self.array else None, {})
            task = f"{self.job_id}_{i}" if self.array else f"{self.job_id}"
            state = fields.get("JobState", "state unknown")
            why = [f"job {task}: {state}"]
            if fields.get("Reason") not in (None, "None", ""):
                why.append(f"reason {fields['Reason']}")
            if codes[i] is not None:
                why.append(f"exit code {codes[i]}")
            else:
                why.append("log has no '# Ended' line")
            out = fields.get("StdOut")
            if out and os.path.isfile(out) and os.path.getsize(out) > 0:
                why.append(f"Slurm output in {out}")
            failed.append((logs[i], ", ".join(why)))
        return failed


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cmd = parse_cmdline(sys.argv[1:] if argv is None else argv, PROG, allow_extra=True)
        if cmd.options.help:
            try:
                print(__doc__)
            except BrokenPipeError:
                pass
            return 0
        config = load_slurm_conf(cmd.options.config)
        sbatch_flags(cmd, config)  # unknown options are an error before anything is written
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1

    run = SlurmRun(cmd, config)

    def on_signal(signum: int, frame) -> None:
        raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        run.submit()
        run.wait()
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except Interrupted as interrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        run.cancel()
        what = f"cancelled job {run.job_id}" if run.job_id else "nothing was submitted"
        print(f"{PROG}: interrupted by {interrupt}: {what}", file=sys.stderr)
        return 128 + interrupt.signum

    failed = run.failures()
    total = len(cmd.jobs.indices)
    for log, why in failed:
        print(f"{PROG}: {len(failed)} / {total} failed, log is in {log} ({why})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
