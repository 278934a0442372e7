#!/usr/bin/env python3
"""Run a command (or an array of jobs) on this machine: the Kaldi ``$cmd`` contract, like run.pl.

Usage:
    utils/run.py exp/log/prepare.log local/prepare.sh data/
    utils/run.py --num-threads 4 JOB=1:8 exp/x/log/decode.JOB.log \\
        python -m serac.bin.decode --split JOB --num-splits 8
    utils/run.py JOB=1:4 exp/log/count.JOB.log "zcat data/split4/JOB.gz | wc -l > exp/JOB.count"
    utils/run.py --max-jobs-run 2 SPLIT=3:5 log/x.SPLIT.log echo SPLIT

Options (utils/slurm.py takes the same command line and submits to Slurm instead):
    --mem 4G           memory per job (ignored locally)
    --num-threads N    threads per job: sets OMP_NUM_THREADS / MKL_NUM_THREADS (default 1)
    --gpu N            GPUs per job; locally the job runs anyway, with a warning if none is visible
    --time T           time limit, Slurm format (ignored locally)
    --max-jobs-run N   at most N jobs at once (never more than nproc // num-threads)
    --num-nodes N      nodes per job (ignored locally)
    --config FILE      Slurm option mapping (ignored locally; accepted so cmd.sh lines swap cleanly)

``NAME=a:b`` (e.g. ``JOB=1:4``) runs jobs a..b, replacing every NAME in the log path and in the
command by the job index. The command is run by ``bash -c``: a single argument is used verbatim
(so ``"a | b && c"`` works); several arguments are joined with spaces, quoting those that contain
whitespace or quotes, so an unquoted ``\\|`` still acts as a pipe, as with Kaldi's run.pl.

Each log gets ``# <command>`` and ``# Started at <date> on <host>``, then the command's stdout and
stderr, then ``# Accounting: time=<s> threads=<n>`` and ``# Ended (code <rc>) at <date>, elapsed
time <s> seconds``. Exit status 0 if every job succeeded; otherwise 1, with a line
``run.py: N / M failed, log is in <log>`` on stderr for each failed job.

Jobs die with run.py. SIGINT / SIGTERM: run.py kills each job's process group (TERM, then KILL after
5 s) and logs it. SIGKILL (``timeout -s KILL``, the OOM killer) cannot be caught, so a watchdog
process in its own session holds the read end of a pipe, learns each job's process group through it
(written by the job itself before it runs anything), and kills the groups still running when the
pipe closes without run.py saying it is done; an interrupted run.py closes it that way too, so a job
the signal caught half-started dies as well.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence


# Options every $cmd accepts; utils/slurm.py may accept more (from its config file).
STANDARD_OPTIONS = ("mem", "num_threads", "gpu", "time", "max_jobs_run", "num_nodes", "config")

_JOB_SPEC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGTkmgt]?$")
_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^(infinite|UNLIMITED)$")


class UsageError(Exception):
    """A bad command line; the message is printed after the program name."""


@dataclass
class JobSpec:
    """The jobs to run: ``var`` is replaced by start..end in the log path and command."""

    var: str | None
    start: int
    end: int

    @property
    def indices(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    def substitute(self, text: str, index: int) -> str:
        return text.replace(self.var, str(index)) if self.var else text


@dataclass
class CmdLine:
    """A parsed ``$cmd`` command line."""

    options: argparse.Namespace
    given: dict[str, str]  # every option given (but --help), name with underscores -> raw value
    extra: dict[str, str]  # the given options not in STANDARD_OPTIONS (only slurm.py allows them)
    jobs: JobSpec
    log: str
    command: str


def _positive_int(name: str, minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} needs an integer, not '{value}'")
        if number < minimum:
            raise argparse.ArgumentTypeError(f"--{name} must be >= {minimum}, not {number}")
        return number

    return parse


def _matching(pattern: re.Pattern, name: str, example: str):
    def parse(value: str) -> str:
        if not pattern.match(value):
            raise argparse.ArgumentTypeError(f"--{name} '{value}' is not like '{example}'")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit 2; we want one line
        raise UsageError(message)


def build_option_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--mem", type=_matching(_MEM, "mem", "4G"), default=None)
    parser.add_argument("--num-threads", type=_positive_int("num-threads", 1), default=1)
    parser.add_argument("--gpu", type=_positive_int("gpu", 0), default=0)
    parser.add_argument("--time", type=_matching(_TIME, "time", "4:00:00"), default=None)
    parser.add_argument("--max-jobs-run", type=_positive_int("max-jobs-run", 1), default=None)
    parser.add_argument("--num-nodes", type=_positive_int("num-nodes", 1), default=1)
    parser.add_argument("--config", default=None)
    return parser


def join_command(args: Sequence[str]) -> str:
    """The bash command for the command arguments (Kaldi run.pl rules, with safer quoting)."""
    if len(args) == 1:
        return args[0]
    return " ".join(
        arg if arg and not re.search(r"[\s'\"\\]", arg) else shlex.quote(arg) for arg in args
    )


def parse_cmdline(argv: Sequence[str], prog: str, allow_extra: bool = False) -> CmdLine:
    """Split ``[options] [NAME=a:b] log command...``; raise UsageError on a bad command line.

    The options end at the first argument not starting with ``--``; each takes a value
    (``--opt value`` or ``--opt=value``), except ``--help``. With ``allow_extra`` options not in
    STANDARD_OPTIONS are returned in ``extra`` (utils/slurm.py checks them against its config).
    """
    argv = list(argv)
    standard, given, extra = [], {}, {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        arg = argv[i]
        if arg in ("-h", "--help"):
            standard.append(arg)
            i += 1
            continue
        if arg == "--":
            i += 1
            break
        if not arg.startswith("--"):
            raise UsageError(f"unknown option {arg}")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"option {arg} needs a value")
            value = argv[i + 1]
            i += 2
        else:
            i += 1
        key = name.replace("-", "_")
        given[key] = value
        if key in STANDARD_OPTIONS:
            standard += [f"--{key.replace('_', '-')}", value]
        elif allow_extra and re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", name):
            extra[key] = value
        else:
            raise UsageError(
                f"unknown option --{name} (known: "
                + " ".join("--" + o.replace("_", "-") for o in STANDARD_OPTIONS)
                + ")"
            )
    options = build_option_parser(prog).parse_args(standard)
    rest = argv[i:]
    if options.help:
        return CmdLine(options, given, extra, JobSpec(None, 1, 1), "", "")

    jobs = JobSpec(None, 1, 1)
    if rest and _JOB_SPEC.match(rest[0]):
        var, start, end = _JOB_SPEC.match(rest[0]).groups()
        start_i = int(start)
        end_i = int(end) if end is not None else start_i
        if end_i < start_i:
            raise UsageError(f"empty job range {rest[0]}")
        jobs = JobSpec(var, start_i, end_i)
        rest = rest[1:]
    if len(rest) < 2:
        raise UsageError("expected [options] [JOB=1:N] <log-file> <command> [args...]; see --help")
    log, command_args = rest[0], rest[1:]
    if jobs.var and jobs.end > jobs.start and jobs.var not in log:
        raise UsageError(
            f"{jobs.end - jobs.start + 1} jobs would write one log file {log}: put {jobs.var} in it"
        )
    if log.endswith((".sh", ".py")) or not log:
        raise UsageError(f"the first argument after the options should be the log file, not '{log}'")
    return CmdLine(options, given, extra, jobs, log, join_command(command_args))


def now() -> str:
    """The date as `date` prints it."""
    return time.strftime("%a %b %e %H:%M:%S %Z %Y")


def header_lines(command: str) -> str:
    lines = command.splitlines() or [""]
    return "".join(f"# {line}\n" for line in lines)


def footer_lines(rc: int, elapsed: float, threads: int) -> str:
    seconds = int(round(elapsed))
    return (
        f"# Accounting: time={seconds} threads={threads}\n"
        f"# Ended (code {rc}) at {now()}, elapsed time {seconds} seconds\n"
    )


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_visible() -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


@dataclass
class _Running:
    index: int
    log: str
    proc: subprocess.Popen
    log_file: IO[str]
    started: float


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived (raised by the signal handler)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def watch_jobs(commands: IO[str] | None = None, grace: float = 5.0) -> None:
    """The watchdog's loop: read ``+PGID`` / ``-PGID`` lines (a job started / was reaped) until
    ``done`` or end of file; at end of file (run.py died) kill the groups still listed."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # only run.py's death ends it
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for line in commands if commands is not None else sys.stdin:
        line = line.strip()
        if line == "done":
            return
        if line[:1] in ("+", "-") and line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    for pgid in groups:
        _kill_pgid(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {g for g in groups if _pgid_alive(g)}
        time.sleep(0.05)
    for pgid in groups:
        _kill_pgid(pgid, signal.SIGKILL)


def _kill_pgid(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pgid_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class _Watchdog:
    """The process that kills run.py's jobs if run.py is killed with SIGKILL (see the module docstring)."""

    def __init__(self) -> None:
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                "import run; run.watch_jobs()")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            start_new_session=True,  # neither a Ctrl-C nor a kill of run.py's process group reaches it
        )

    def register_in_child(self) -> None:
        """preexec_fn of a job: announce its process group from the child itself, before it runs anything,
        so that no window remains in which run.py could die with a job started but not yet announced."""
        os.write(self.proc.stdin.fileno(), f"+{os.getpid()}\n".encode())

    def tell(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the watchdog died: the jobs still run, unguarded
            pass

    def close(self, kill_remaining: bool = False) -> None:
        """Stop the watchdog; with ``kill_remaining`` it first kills the groups still registered (an interrupted
        run.py: a job whose Popen the signal cut short is registered, yet unknown to run.py)."""
        if not kill_remaining:
            self.tell("done")
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()


def run_local(cmd: CmdLine, prog: str) -> int:
    """Run the jobs of ``cmd`` here; return the number of failed jobs (after printing them)."""
    threads = cmd.options.num_threads
    limit = max(1, usable_cpus() // threads)
    if cmd.options.max_jobs_run:
        limit = min(limit, cmd.options.max_jobs_run)
    if cmd.options.gpu > 0 and not gpu_visible():
        print(
            f"{prog}: WARNING: --gpu {cmd.options.gpu} but no GPU is visible here; "
            "running anyway (the command decides)",
            file=sys.stderr,
        )
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    host = socket.gethostname()

    pending = list(cmd.jobs.indices)
    running: list[_Running] = []
    failed: list[tuple[int, str]] = []

    def on_signal(signum: int, frame) -> None:
        raise Interrupted(signum)

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    watchdog = _Watchdog()
    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < limit:
                index = pending.pop(0)
                log = cmd.jobs.substitute(cmd.log, index)
                command = cmd.jobs.substitute(cmd.command, index)
                Path(log).parent.mkdir(parents=True, exist_ok=True)
                log_file = open(log, "w")
                log_file.write(header_lines(command) + f"# Started at {now()} on {host}\n")
                log_file.flush()
                proc = subprocess.Popen(
                    ["bash", "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own process group, so we can kill all of it
                    preexec_fn=watchdog.register_in_child,
                )
                running.append(_Running(index, log, proc, log_file, time.monotonic()))
            time.sleep(0.02)
            for job in list(running):
                rc = job.proc.poll()
                if rc is None:
                    continue
                watchdog.tell(f"-{job.proc.pid}")
                if rc < 0:  # killed by a signal: report it the way bash would
                    rc = 128 - rc
                job.log_file.write(footer_lines(rc, time.monotonic() - job.started, threads))
                job.log_file.close()
                running.remove(job)
                if rc != 0:
                    failed.append((job.index, job.log))
    except Interrupted as interrupt:
        interrupted = True
        for sig in old_handlers:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        for job in running:
            _kill_pgid(job.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for job in running:
            try:
                job.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_pgid(job.proc.pid, signal.SIGKILL)
                job.proc.wait()
            rc = 128 + interrupt.signum
            job.log_file.write(f"# Killed by {interrupt} (run.py was interrupted)\n")
            job.log_file.write(footer_lines(rc, time.monotonic() - job.started, threads))
            job.log_file.close()
        print(
            f"{prog}: interrupted by {interrupt}: killed {len(running)} running job(s); "
            f"{len(pending)} not started",
            file=sys.stderr,
        )
        raise
    finally:
        watchdog.close(kill_remaining=interrupted)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)

    total = len(cmd.jobs.indices)
    for _, log in sorted(failed):
        print(f"{prog}: {len(failed)} / {total} failed, log is in {log}", file=sys.stderr)
    return len(failed)


def main(argv: Sequence[str] | None = None) -> int:
    prog = "run.py"
    try:
        cmd = parse_cmdline(sys.argv[1:] if argv is None else argv, prog)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    if cmd.options.help:
        try:
            print(__doc__)
        except BrokenPipeError:  # e.g. run.py --help | head
            pass
        return 0
    try:
        return 1 if run_local(cmd, prog) else 0
    except Interrupted as interrupt:
        return 128 + interrupt.signum


if __name__ == "__main__":
    sys.exit(main())
