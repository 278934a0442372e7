"""Shared pytest fixtures.

slurm_cluster: a one-node Slurm on localhost, started by tests/slurm/start_slurm.sh (installed with
apt-get when missing and we are root) and stopped at the end of the session if this session
started it. Where Slurm cannot be had the tests that use it are skipped, unless CI=true: then
they fail, so that CI never passes without having run them.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

TESTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SlurmCluster:
    node: str
    cpus: int
    memory_mb: int


def _slurm_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"local Slurm is required when CI=true: {reason}")
    pytest.skip(f"no local Slurm: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    try:
        start = subprocess.run(
            ["bash", str(TESTS_DIR / "slurm" / "start_slurm.sh")],
            capture_output=True, text=True, timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        _slurm_unavailable(f"start_slurm.sh did not finish: {e}")
    if start.returncode != 0:
        _slurm_unavailable(start.stderr.strip().splitlines()[-1] if start.stderr.strip()
                           else f"start_slurm.sh exited {start.returncode}")
    started_here = start.stdout.strip().splitlines()[-1:] == ["started"]
    node = subprocess.run(["scontrol", "-o", "show", "node"], capture_output=True, text=True)
    fields = dict(re.findall(r"(\w+)=(\S+)", node.stdout.splitlines()[0] if node.stdout else ""))
    cluster = SlurmCluster(
        node=fields.get("NodeName", ""),
        cpus=int(fields.get("CPUTot", "1")),
        memory_mb=int(fields.get("RealMemory", "1")),
    )
    yield cluster
    if started_here:
        subprocess.run(["bash", str(TESTS_DIR / "slurm" / "stop_slurm.sh")], capture_output=True)


@pytest.fixture
def one_thread():
    """Tiny ops on a busy shared machine run many times slower with an intra-op thread pool: one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def yesno_recipe_run(tmp_path_factory):
    """egs/yesno/asr/run.sh on the real yesno corpus with its defaults (every stage to 6: training 100 epochs,
    decoding), once per session: (recipe dir, the CompletedProcess). tests/test_recipe_yesno.py checks the run and
    its re-run; tests/test_export_sherpa.py exports and decodes its model (stage 7), so the recipe trains once."""
    from recipe_utils import YESNO, recipe_copy, run_recipe

    if not YESNO.is_dir():
        pytest.skip(f"{YESNO} not present")
    recipe = recipe_copy("yesno/asr", tmp_path_factory.mktemp("yesno") / "yesno")
    return recipe, run_recipe(recipe, "--corpus-dir", str(YESNO))


@pytest.fixture(scope="session")
def tiny_synth_corpus(tmp_path_factory):
    """egs/synth_assistant/asr stages 0-3 on the tiny corpus (recipe_utils.CORPUS_ARGS), once per session: the
    recipe dir. The synth_assistant recipe tests copy its corpus (recipe_utils.copy_corpus) and never write here."""
    from recipe_utils import CORPUS_ARGS, CORPUS_LM_ORDER, recipe_copy, run_recipe

    recipe = recipe_copy("synth_assistant/asr", tmp_path_factory.mktemp("synth_corpus") / "asr")
    run_recipe(recipe, "--stage", "0", "--stop-stage", "3", *CORPUS_ARGS, "--lm-order", CORPUS_LM_ORDER)
    return recipe
