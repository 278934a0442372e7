"""One live training per experiment directory: an exclusive ``fcntl.flock`` on ``<exp-dir>/.lock``.

The kernel drops a flock when its holder dies, however it dies (SIGKILL, OOM kill, a lost node), so a dead
training never keeps the directory; the file itself stays behind and only records the last holder's pid and host
for the error message. (flock is per host on most network filesystems: two trainings on one directory from two
hosts are not caught there.)
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Optional, Type


class ExperimentLocked(RuntimeError):
    """Another live process holds the experiment directory."""


class ExperimentLock:
    """``with ExperimentLock(exp_dir):`` holds ``exp_dir/.lock`` for the block, or raises :class:`ExperimentLocked`
    naming the directory and the holder's pid at once (no waiting)."""

    def __init__(self, exp_dir: str | Path) -> None:
        self.exp_dir = Path(exp_dir)
        self.path = self.exp_dir / ".lock"
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        # no O_TRUNC: the holder's pid must survive a failed attempt to read it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ExperimentLocked(f"{self.exp_dir} is in use by another training (pid {holder}, from {self.path}); "
                                   f"wait for it to finish or stop it, or train into another --exp-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ExperimentLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()
