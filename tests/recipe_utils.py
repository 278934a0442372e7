"""Helpers for the end-to-end recipe tests: run a recipe in a private copy so tests never touch egs/."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
YESNO = SHARED_DATA / "yesno" / "waves_yesno"  # the real yesno corpus (egs/yesno/asr --corpus-dir)

# the tiny synthetic corpus of the synth_assistant recipe tests (egs/synth_assistant/asr stages 0-3: 10 training
# speakers x 4 utterances, 4 dev and 6 test speakers x 3, BPE 80, a 3-gram token LM); tests/conftest.py prepares
# it once per session (tiny_synth_corpus) and each test copies it with copy_corpus
GEN_OPTS = ("--dev-speakers 4 --test-speakers 6 --min-test-speakers-per-accent 0 --adapt-speakers-per-region 1 "
            "--eval-utts-per-speaker 3")
CORPUS_ARGS = ["--num-speakers", "10", "--utts-per-speaker", "4", "--gen-opts", GEN_OPTS, "--vocab-size", "80"]
CORPUS_LM_ORDER = "3"


def recipe_copy(recipe: str, dest: Path) -> Path:
    """Copy egs/<recipe> (scripts, conf, local) into dest, with path.sh/steps/utils linked to the tree."""
    src = ROOT / "egs" / recipe
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in ("path.sh", "steps", "utils"):
            os.symlink(ROOT / item.name, dest / item.name)
        elif item.name in ("data", "exp", "download"):
            continue
        elif item.is_dir():
            shutil.copytree(item, dest / item.name, symlinks=True)
        else:
            shutil.copy2(item, dest / item.name)
    return dest


def recipe_env() -> dict:
    """The caller's environment without the test runner's Python settings: the recipe's path.sh sets its own."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run_recipe(recipe_dir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run the recipe's run.sh; with ``check`` a failure raises with the end of its output."""
    proc = subprocess.run(["bash", "./run.sh", *args], cwd=recipe_dir, env=recipe_env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def summary_wer(path: Path) -> float:
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["settings", "WER"], f"{path}: unexpected header {lines[0]!r}"
    return float(lines[1].split("\t")[1])


def copy_corpus(prepared: Path, recipe_dir: Path) -> None:
    """Copy a synth_assistant corpus prepared in ``prepared`` (its download/ and data/: audio, manifests, features
    and BPE, which name each other by relative paths) into ``recipe_dir``, whose stages 0-3 then find it and skip."""
    for name in ("download", "data"):
        shutil.copytree(prepared / name, recipe_dir / name, symlinks=True)
