"""Small shared helpers: atomic writes, number formatting for tables, logging set-up, environment report."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

PathLike = Union[str, Path]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically,
    so a killed run never leaves a half-written checkpoint or manifest behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the suffix(es): lhotse picks the format (e.g. .jsonl.gz) from the file name
    tmp = path.with_name(f".tmp.{os.getpid()}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


#: what every table and TSV that serac writes shows for a number that does not exist (no interval, gap undefined)
MISSING = "-"


def format_number(value: Optional[float], digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or :data:`MISSING` for None and NaN: the one number formatter of the
    tables (RESULTS.md, cohort TSVs and Markdown, summaries)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def setup_logging(log_file: PathLike | None = None, rank: int = 0, level: int = logging.INFO) -> None:
    fmt = f"%(asctime)s %(levelname)s [%(filename)s:%(lineno)d]{' (rank %d)' % rank if rank else ''} %(message)s"
    handlers: list = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)


def is_recipe_output(path: str) -> bool:
    """True for the tracked files a recipe run itself rewrites: ``egs/**/RESULTS*.md`` and ``egs/**/results/**``
    (its tables and figures)."""
    parts = Path(path).parts
    if not parts or parts[0] != "egs":
        return False
    return "results" in parts[:-1] or (parts[-1].startswith("RESULTS") and parts[-1].endswith(".md"))


def _porcelain_path(line: str) -> str:
    """The path of a ``git status --porcelain`` line (the new path of a rename), unquoted."""
    path = line[3:].split(" -> ")[-1]
    return path[1:-1] if path.startswith('"') and path.endswith('"') else path


def git_revision(root: PathLike | None = None) -> str:
    """The short revision of serac's checkout (or of ``root``), with ``-dirty`` when tracked files differ from it.
    Changes to recipe outputs (:func:`is_recipe_output`: RESULTS*.md and results/ under egs/) do not count: a
    recipe writes them into the tree, so a recipe's second configuration run after its first (the fairness
    recipe's target keys, a stage-10 rerun) would otherwise be recorded as trained on a modified tree."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout
        dirty = [line for line in status.splitlines() if line.strip() and not is_recipe_output(_porcelain_path(line))]
        return (rev or "unknown") + ("-dirty" if dirty else "")
    except Exception:  # git missing or not a checkout: not fatal, just unknown
        return "unknown"


def provenance(exp_dirs: Dict[str, Path]) -> str:
    """One sentence for a RESULTS.md: the git revision the writer runs at and the ones each training ran at (from
    its exp dir's config.yaml, which the trainer writes with :func:`environment_info`: ``git_revisions`` lists every
    revision a resumed run trained at), so a table that mixes runs of other revisions, or of a tree with uncommitted
    changes (``-dirty``), says so."""
    import yaml

    trained: Dict[str, List[str]] = {}
    for name, exp_dir in exp_dirs.items():
        cfg_path = Path(exp_dir) / "config.yaml"
        env = (yaml.safe_load(cfg_path.read_text()) or {}).get("env", {}) if cfg_path.is_file() else {}
        revisions = env.get("git_revisions") or [env.get("git_revision") or "not recorded"]
        trained.setdefault(" then ".join(str(r) for r in revisions), []).append(name)
    here = git_revision()
    if set(trained) == {here}:
        return f"git revision `{here}` (the trainings and this table)."
    runs = "; ".join(f"`{rev}`: {', '.join(names)}" for rev, names in sorted(trained.items()))
    return f"git revision `{here}` (this table); the trainings ran at {runs}."


_MALLOC_RETAIN = 2**31 - 1  # bytes; glibc's mallopt takes an int
_malloc_tuned: Optional[bool] = None


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel; returns whether
    it took effect (idempotent).

    By default glibc serves blocks over its dynamic mmap threshold (128 KB, raised up to 32 MB as blocks are
    freed) with fresh ``mmap`` pages and trims the heap's free top: a training step's activations are then
    page-faulted in anew every step (a Conformer step (8 x 4 s, one thread): ~31,000 minor faults, ~18% of its
    CPU time; ContextNet ~10,000, the LSTM ~4,000-10,000). Raising both the mmap and the trim threshold to 2 GiB
    keeps them in the heap (faults per step: tens). Raising only the trim threshold is worse than neither (it
    freezes the mmap threshold at 128 KB: 250,000 faults a step), so both are set together. The arithmetic is
    unchanged (PyTorch aligns every CPU tensor to 64 bytes either way); the process's resident memory stays at
    its peak instead of shrinking. ``SERAC_MALLOC=default`` in the environment leaves glibc's defaults. Without
    glibc (macOS, musl) nothing is done and False is returned; with another allocator preloaded (jemalloc,
    tcmalloc) glibc's ``mallopt`` still succeeds, so True is returned, but it has no effect on that allocator."""
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        if os.environ.get("SERAC_MALLOC", "retain") != "default" and sys.platform.startswith("linux"):
            try:
                import ctypes

                mallopt = ctypes.CDLL(None).mallopt  # glibc only (musl has none)
                m_mmap_threshold, m_trim_threshold = -3, -1
                _malloc_tuned = bool(mallopt(m_mmap_threshold, ctypes.c_int(_MALLOC_RETAIN))
                                     and mallopt(m_trim_threshold, ctypes.c_int(_MALLOC_RETAIN)))
            except (OSError, AttributeError):
                pass
    return _malloc_tuned


def environment_info() -> Dict[str, Any]:
    """Versions and host facts logged at start-up so a run can be understood later."""
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "git_revision": git_revision(),
        "cpus": os.cpu_count(),
    }
    for mod in ("torch", "lhotse", "k2", "fast_rnnt", "kaldifeat", "sentencepiece"):
        try:
            m = __import__(mod)
            info[mod] = str(getattr(m, "__version__", "installed"))
        except Exception:
            info[mod] = None
    try:
        import torch

        info["torch_num_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
    except Exception:
        pass
    return info
