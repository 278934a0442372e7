"""Scale-out: DDP training (torchrun, gloo on CPU) locally and inside a real Slurm job, resume with another world
size, and sharded decoding through a Slurm job array giving the same files as a single local job."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recipe_utils import SHARED_DATA, recipe_copy, recipe_env, run_recipe

YESNO = SHARED_DATA / "yesno" / "waves_yesno"
pytestmark = pytest.mark.skipif(not YESNO.is_dir(), reason=f"{YESNO} not present")

TINY = """\
model:
  encoder: {name: lstm, hidden_dim: 48, num_layers: 1, output_dim: 32, dropout: 0.0}
  decoder_dim: 32
  joiner_dim: 32
loss: {prune_range: 3, lm_scale: 0.0, warm_step: 20}
optim: {lr: 5.0e-3, warmup_steps: 10, lr_batches: 300, lr_epochs: 20}
data: {max_duration: 24.0, num_buckets: 2}
train: {num_epochs: 4, log_interval: 5, progress_bar: false, seed: 7}
"""


def sh(cwd: Path, *cmd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", ". ./path.sh && " + " ".join(cmd)], cwd=cwd, env=recipe_env(),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def yesno_dir(tmp_path_factory) -> Path:
    """A yesno recipe copy with manifests, features and lang prepared (stages 0-3)."""
    recipe = recipe_copy("yesno/asr", tmp_path_factory.mktemp("dist") / "yesno")
    run_recipe(recipe, "--corpus-dir", str(YESNO), "--stop-stage", "3")
    (recipe / "conf" / "tiny.yaml").write_text(TINY)
    return recipe


def train(recipe: Path, exp: str, *opts: str) -> None:
    sh(recipe, "steps/train.sh", *opts, "--train-config conf/tiny.yaml data/lang_word",
       "data/fbank/yesno_cuts_train.jsonl.gz data/fbank/yesno_cuts_test.jsonl.gz", exp)


def final_valid_loss(exp_dir: Path, epoch: int) -> float:
    import torch

    return torch.load(exp_dir / f"epoch-{epoch}.pt", map_location="cpu", weights_only=False)["valid"]["loss"]


def test_ddp_two_processes_matches_single_process(yesno_dir):
    """Same effective batch (1 x 24 s vs 2 x 12 s), same number of epochs: validation loss within 2%."""
    train(yesno_dir, "exp/single")
    train(yesno_dir, "exp/ddp", "--nproc-per-node 2 --train-opts '--set data.max_duration=12.0'")
    log = (yesno_dir / "exp/ddp/config.yaml").read_text()
    assert "world_size: 2" in log
    single, ddp = final_valid_loss(yesno_dir / "exp/single", 4), final_valid_loss(yesno_dir / "exp/ddp", 4)
    assert abs(ddp - single) / single < 0.02, f"valid loss single {single:.5f} vs 2-process DDP {ddp:.5f}"

    # resume with another world size: continue the 2-process run for 2 more epochs in one process
    train(yesno_dir, "exp/ddp", "--num-epochs 6")
    assert (yesno_dir / "exp/ddp/epoch-6.pt").is_file()
    assert "resumed from exp/ddp/epoch-4.pt" in "".join(
        p.read_text() for p in (yesno_dir / "exp/ddp/log").glob("train-*.log"))


def test_ddp_resume_is_bit_identical(yesno_dir):
    """A 2-process run stopped after epoch 1 and resumed with 2 processes ends bit-identical to one run of 2 epochs:
    the checkpoint holds each rank's random state (dropout on, so the random streams matter)."""
    import torch

    opts = "--nproc-per-node 2 --train-opts '--set data.max_duration=12.0 --set model.encoder.dropout=0.3'"
    train(yesno_dir, "exp/ddp_whole", opts, "--num-epochs 2")
    train(yesno_dir, "exp/ddp_resumed", opts, "--num-epochs 1")
    train(yesno_dir, "exp/ddp_resumed", opts, "--num-epochs 2")
    whole, resumed = (torch.load(yesno_dir / f"exp/{e}/epoch-2.pt", map_location="cpu", weights_only=False)
                      for e in ("ddp_whole", "ddp_resumed"))
    assert len(resumed["rng"]) == 2
    for name, value in whole["model"].items():
        assert torch.equal(resumed["model"][name], value), name


def test_ddp_training_inside_slurm_job(yesno_dir, slurm_cluster):
    train(yesno_dir, "exp/slurm_ddp", "--cmd utils/slurm.py --nproc-per-node 2 --num-epochs 2",
          "--train-opts '--set data.max_duration=12.0'")
    assert (yesno_dir / "exp/slurm_ddp/epoch-2.pt").is_file()
    assert "world_size: 2" in (yesno_dir / "exp/slurm_ddp/config.yaml").read_text()
    log = (yesno_dir / "exp/slurm_ddp/log/train.log").read_text()
    assert "# Ended (code 0)" in log


def test_sharded_slurm_decode_equals_single_local_decode(yesno_dir, slurm_cluster):
    if not (yesno_dir / "exp/single/epoch-4.pt").is_file():
        train(yesno_dir, "exp/single")
    shutil.copytree(yesno_dir / "exp/single", yesno_dir / "exp/single_b")
    common = "--epoch 4 --avg 2 --method greedy_search"
    sh(yesno_dir, "steps/decode.sh --cmd utils/run.py --nj 1", common,
       "exp/single data/lang_word data/fbank/yesno_cuts_test.jsonl.gz test")
    sh(yesno_dir, "steps/decode.sh --cmd utils/slurm.py --nj 3", common,
       "exp/single_b data/lang_word data/fbank/yesno_cuts_test.jsonl.gz test")
    a, b = yesno_dir / "exp/single/decode/test", yesno_dir / "exp/single_b/decode/test"
    assert len(list((b / "log").glob("decode-*.log"))) == 3
    for kind in ("recogs", "errs", "wer-summary"):
        name = f"{kind}-test-greedy_search-epoch-4-avg-2.txt"
        assert (a / name).read_text() == (b / name).read_text(), f"{name} differs between --nj 1 and --nj 3"
