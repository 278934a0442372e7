"""The training loop's guards and guarantees (serac/train): non-finite steps skipped and counted, a diverged run
stopped without a checkpoint, transcripts of every set checked, exact resume after SIGKILL, one live training per
experiment directory, the add-on interface (per-utterance weights, own step), log lines instead of a progress bar,
the collector's frozen setup objects.
All on TinyTrainer's 1-layer LSTM (tests/trainer_utils.py), a few seconds each."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

from serac.train.addon import TrainingAddon

from trainer_utils import TinyTrainer

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def train_log(exp_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted((exp_dir / "log").glob("train-*.log")))


def add_addon(monkeypatch, addon) -> None:
    """Make the trainer build ``addon`` as it builds EWC and distillation: the loop itself is not edited."""
    import serac.train.trainer as trainer

    monkeypatch.setattr(trainer, "TRAINING_ADDONS", (*trainer.TRAINING_ADDONS, lambda cfg, setup: addon))


class PoisonedGradient(TrainingAddon):
    """An add-on whose penalty is 0 with a NaN gradient (d sqrt(x) / dx at 0) on the steps in ``poisoned``
    (counted from 0 by calls); it records the parameters on those steps and checks at the next call that the
    skipped update left them unchanged."""

    name = "poison"
    loss_names = ()
    reweights = False

    def __init__(self, poisoned) -> None:
        self.poisoned, self.calls, self.snapshot, self.unchanged = set(poisoned), 0, None, []

    def penalty(self, model):
        params = [p for p in model.parameters()]
        if self.snapshot is not None:
            self.unchanged.append(all(torch.equal(p, s) for p, s in zip(params, self.snapshot)))
            self.snapshot = None
        out = None
        if self.calls in self.poisoned:
            self.snapshot = [p.detach().clone() for p in params]
            out = (params[0] - params[0].detach()).abs().sum().sqrt()
        self.calls += 1
        return out

    def utterance_weights(self, ctx, losses):
        return None

    def loss_terms(self, ctx):
        return {}

    def after_step(self, ctx):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_nonfinite_gradient_skips_the_update_and_is_counted(tmp_path: Path, monkeypatch, one_thread) -> None:
    """A step with a finite loss but NaN gradients changes no parameter, is counted and logged with its cuts and
    step; the run goes on and its checkpoint is finite."""
    trainer = TinyTrainer(tmp_path)
    poison = PoisonedGradient(poisoned=[1, 3])
    add_addon(monkeypatch, poison)
    ckpt = trainer.run("exp", [])
    assert ckpt["num_nonfinite"] == 2 and ckpt["batch_idx_train"] >= 5
    assert poison.unchanged == [True, True]
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    log = train_log(tmp_path / "exp")
    assert "non-finite gradient at step 1 (cuts u0-" in log and "non-finite gradient at step 3 (cuts u0-" in log
    assert "non-finite skipped 2" in log


def test_steps_skipped_in_a_row_stop_the_run_without_a_checkpoint(tmp_path: Path, monkeypatch, one_thread) -> None:
    trainer = TinyTrainer(tmp_path)
    add_addon(monkeypatch, PoisonedGradient(poisoned=range(2, 100)))
    from serac.train.trainer import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"3 steps in a row .*max_skipped_in_a_row 3.*has none"):
        trainer.run("exp", ["train.max_skipped_in_a_row=3", "train.num_epochs=2"])
    assert not list((tmp_path / "exp").glob("epoch-*.pt"))
    # a share of a window: 3 of the last 4 steps skipped (never 3 in a row) is more than 0.5 of 4
    monkeypatch.undo()
    add_addon(monkeypatch, PoisonedGradient(poisoned=[1, 2, 4]))
    with pytest.raises(TrainingDiverged, match=r"3 of the last 4 skipped"):
        trainer.run("window", ["train.skip_window=4", "train.max_skipped_fraction=0.5"])


def test_huge_learning_rate_stops_at_the_nonfinite_validation_loss(tmp_path: Path, one_thread) -> None:
    """Issue 14's reproduction: serac.bin.train --set optim.lr=1e8 used to exit 0 with NaN checkpoints. Now it
    skips the non-finite steps, then exits 1 with one error line at the first non-finite validation loss and
    writes no checkpoint of the diverged model."""
    trainer = TinyTrainer(tmp_path)
    args = trainer.args("exp")
    cli = [sys.executable, "-m", "serac.bin.train", "--exp-dir", args.exp_dir, "--lang-dir", args.lang_dir,
           "--train-cuts", args.train_cuts, "--valid-cuts", args.valid_cuts]
    for item in trainer.BASE + ["optim.lr=1e8"]:
        cli += ["--set", item]
    proc = subprocess.run(cli, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "non-finite loss at step" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "ERROR" in last and "epoch 1: the validation loss is nan" in last and "epoch-1.pt is not written" in last
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "exp").glob("epoch-*.pt"))


def test_checkpoint_with_nonfinite_parameters_is_refused(tmp_path: Path) -> None:
    from serac.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "epoch-3.pt"
    good = {"encoder.w": torch.ones(2), "steps": torch.tensor([3])}
    save_checkpoint(path, model=good, epoch=3)
    bad = {"encoder.w": torch.tensor([1.0, float("nan")]), "joiner.b": torch.tensor([float("inf")]),
           "decoder.e": torch.zeros(1), "steps": torch.tensor([4])}
    with pytest.raises(ValueError, match=r"refusing to write .*epoch-3.pt: 2 tensors .*\(encoder.w, joiner.b\)"):
        save_checkpoint(path, model=bad, epoch=4)
    assert load_checkpoint(path)["epoch"] == 3  # the previous file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-3.pt"]  # and no temporary file is left


def test_bad_transcripts_of_both_sets_are_skipped_and_counted(tmp_path: Path, one_thread) -> None:
    """An empty transcript (crashed validation at the end of epoch 1: `AssertionError: tensor([0])`) and more
    tokens than encoder frames (crashed training: `Modified transducer requires T >= S`), in the training and the
    validation set: skipped, each cut named in the log and in log/skipped-cuts-<set>.txt, one summary line a set."""
    too_long = " ".join(["YES", "NO"] * 20)  # 40 tokens; cuts have 30-49 frames, 15-24 after subsampling by 2
    trainer = TinyTrainer(tmp_path, train_texts=["YES NO", "NO", "YES", too_long, "NO YES", "", "YES YES", "NO NO"],
                          valid_texts=["YES", "", too_long])
    ckpt = trainer.run("exp", [])
    assert torch.isfinite(torch.tensor(ckpt["valid"]["loss"]))
    log_dir = tmp_path / "exp" / "log"
    valid_skips = dict(line.split("\t") for line in (log_dir / "skipped-cuts-valid.txt").read_text().splitlines())
    train_skips = dict(line.split("\t") for line in (log_dir / "skipped-cuts-train.txt").read_text().splitlines())
    assert sorted(valid_skips) == ["u1-1", "u1-2"] and sorted(train_skips) == ["u0-3", "u0-5"]
    assert valid_skips["u1-1"] == "empty transcript"
    assert "40 tokens > " in valid_skips["u1-2"] and "T >= S" in valid_skips["u1-2"]
    log = train_log(tmp_path / "exp")
    assert "valid set: skipped 2 of 3 cuts (1 empty transcript, 1 more tokens than encoder frames)" in log
    assert "train set: skipped 2 of 8 cuts (1 more tokens than encoder frames, 1 empty transcript)" in log
    assert "cut u1-2: 40 tokens" in log
    # the regular topology may emit several symbols per frame: only the empty transcript is skipped there
    trainer.run("regular", ["loss.rnnt_type=regular"])
    assert (tmp_path / "regular/log/skipped-cuts-valid.txt").read_text() == "u1-1\tempty transcript\n"


def test_transcript_problem_by_hand(tmp_path: Path) -> None:
    """Every kind, and the boundary T == S (kept): a cut of F feature frames has F // 2 encoder frames here."""
    from lhotse import load_manifest
    from lhotse.utils import fastcopy

    from serac.train.transcripts import transcript_problem
    from trainer_utils import write_feature_cuts

    class Words:
        def encode(self, text):
            if "MAYBE" in text:
                raise KeyError(f"token 'MAYBE' of {text!r} is not in lang/tokens.txt and there is no <unk>")
            return [1] * len(text.split())

    write_feature_cuts(tmp_path / "c.jsonl.gz", tmp_path / "f", 1, 0, texts=["YES"])
    cut = next(iter(load_manifest(tmp_path / "c.jsonl.gz")))
    t = cut.num_frames // 2

    def problem(text, one_per_frame=True):
        sups = [fastcopy(cut.supervisions[0], text=text)] if text is not None else []
        return transcript_problem(fastcopy(cut, supervisions=sups), Words(), 2, one_per_frame)

    assert problem(None) == ("no supervision", "the cut has no supervision")
    assert problem(" ") == ("empty transcript", "empty transcript")
    assert problem("YES MAYBE")[0] == "unknown token" and "'MAYBE'" in problem("YES MAYBE")[1]
    assert problem(" ".join(["YES"] * t)) is None
    kind, why = problem(" ".join(["YES"] * (t + 1)))
    assert kind == "more tokens than encoder frames"
    assert why.startswith(f"{t + 1} tokens > {t} encoder frames ({cut.num_frames} feature frames / subsampling 2)")
    assert problem(" ".join(["YES"] * (t + 1)), one_per_frame=False) is None


def test_a_set_without_a_usable_cut_is_refused_naming_one(tmp_path: Path, one_thread) -> None:
    trainer = TinyTrainer(tmp_path, valid_texts=["", "  "])
    with pytest.raises(ValueError, match=r"valid.jsonl.gz: every one of the 2 cuts of the valid set is unusable, "
                                         r"e.g. cut u1-0: empty transcript"):
        trainer.run("exp", [])


RANDOM_RUN = ["train.num_epochs=3", "model.encoder.dropout=0.3",
              "data.spec_augment={num_frame_masks: 1, features_mask_size: 2, frames_mask_size: 5, "
              "time_warp_factor: 0}", "data.noise_floor={prob: 0.5, low: 2.0, high: 6.0}"]

KILL_AFTER_EPOCH_1 = """
import json, os, signal, sys
from argparse import Namespace
from serac.config import load_config
from serac.train.trainer import train
spec = json.loads(sys.argv[1])
def die(epoch, valid):
    if epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)
train(Namespace(**spec["args"]), load_config(None, spec["overrides"]), on_epoch_end=die)
"""


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, one_thread) -> None:
    """A training SIGKILLed after epoch 1 and resumed gives the parameters of an uninterrupted run, bit for bit,
    with dropout, SpecAugment and the noise augmentation drawing from every random generator (the checkpoint
    holds their states; without them the resumed run draws other masks)."""
    trainer = TinyTrainer(tmp_path)
    whole = trainer.run("whole", RANDOM_RUN)
    spec = {"args": vars(trainer.args("killed")), "overrides": trainer.BASE + RANDOM_RUN}
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_EPOCH_1, json.dumps(spec)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "killed").glob("epoch-*.pt")) == ["epoch-1.pt"]
    resumed = trainer.run("killed", RANDOM_RUN)
    assert "resumed from" in train_log(tmp_path / "killed")
    assert resumed["batch_idx_train"] == whole["batch_idx_train"]
    for name, value in whole["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    assert resumed["valid"] == whole["valid"]


HOLD_LOCK = """
import sys, time
from serac.train.exp_lock import ExperimentLock
ExperimentLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_second_training_on_a_live_experiment_dir_is_refused(tmp_path: Path, one_thread) -> None:
    """Another live process holding <exp-dir>/.lock: refused at once, naming the directory and the pid. Once
    that holder is SIGKILLed the directory is free (the kernel drops the lock). A running training holds it too."""
    from serac.train.exp_lock import ExperimentLock, ExperimentLocked

    trainer = TinyTrainer(tmp_path)
    exp_dir = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(exp_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExperimentLocked, match=rf"{exp_dir} is in use by another training \(pid {holder.pid} "):
            trainer.run("exp", [])
        assert not list(exp_dir.glob("epoch-*.pt"))
    finally:
        holder.kill()
        holder.wait()
    seen: List[str] = []

    def try_lock(epoch, valid):
        try:
            ExperimentLock(exp_dir).acquire()
        except ExperimentLocked as e:
            seen.append(str(e))

    from serac.train.trainer import train

    train(trainer.args("exp"), trainer.config([]), on_epoch_end=try_lock)
    assert len(seen) == 1 and f"pid {os.getpid()} " in seen[0]
    with ExperimentLock(exp_dir):  # released at the end of the training
        pass


def test_addon_weights_utterances_and_takes_its_own_step(one_thread) -> None:
    """The add-on interface carries per-utterance reweighting (the coming adversarial reweighting): the loss is the
    weighted sum of the model's per-utterance losses (0.5 simple + pruned + 0.3 CTC after warm-up), the add-on sees
    them, and weights of 1 give the plain loss."""
    from serac.config import load_config
    from serac.train.addon import TrainingAddon
    from serac.train.trainer import compute_loss, loss_in_context
    from serac.transducer.model import build_model

    class Tok:
        def encode(self, text):
            return [int(t) for t in text.split()]

    class Reweight(TrainingAddon):
        name, reweights = "reweight", True

        def __init__(self, weights: Optional[List[float]]) -> None:
            self.weights, self.seen = weights, {}

        def utterance_weights(self, ctx, losses):
            self.seen["losses"] = losses
            return None if self.weights is None else torch.tensor(self.weights)

    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 12},
                         "decoder_dim": 8, "joiner_dim": 8, "ctc_head": True}, num_features=10, vocab_size=7)
    model.eval()  # no dropout: every call below sees the same model
    cfg = load_config(None, ["loss.ctc_scale=0.3", "loss.warm_step=0"])
    texts, lens = ["1 2 3", "4 5", "6"], [40, 32, 36]
    feats = torch.randn(3, 40, 10)
    batch = {"inputs": feats, "supervisions": {"num_frames": torch.tensor(lens), "text": texts}}
    dev = torch.device("cpu")
    plain, plain_stats = compute_loss(model, batch, Tok(), cfg, step=100, device=dev, train=True)
    ones, _ = compute_loss(model, batch, Tok(), cfg, step=100, device=dev, train=True, addons=[Reweight(None)])
    assert ones.item() == pytest.approx(plain.item(), rel=1e-5)
    out = model(feats, torch.tensor(lens), [Tok().encode(t) for t in texts], prune_range=5, lm_scale=0.25,
                reduction="none")
    alone = (0.5 * out["simple_loss"] + out["pruned_loss"] + 0.3 * out["ctc_loss"]).tolist()
    addon = Reweight([2.0, 0.0, 0.5])
    loss, stats, ctx = loss_in_context(model, batch, Tok(), cfg, step=100, device=dev, train=True, addons=[addon])
    assert loss.item() == pytest.approx(2.0 * alone[0] + 0.5 * alone[2], rel=1e-4)
    assert stats["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert addon.seen["losses"].tolist() == pytest.approx(alone, rel=1e-4)
    assert ctx.utterance_weights.tolist() == [2.0, 0.0, 0.5]
    # validation is never reweighted
    _, valid_stats = compute_loss(model, batch, Tok(), cfg, step=100, device=dev, train=False, addons=[addon])
    assert valid_stats["loss"] == pytest.approx(plain_stats["loss"], rel=1e-5)


def test_after_step_and_state_of_an_addon_in_the_loop(tmp_path: Path, monkeypatch, one_thread) -> None:
    """after_step runs once per optimizer step with the batch's context; the add-on's state is saved in every
    checkpoint and handed back on resume."""
    from serac.train.addon import TrainingAddon

    class Counting(TrainingAddon):
        name = "counting"

        def __init__(self) -> None:
            self.steps: List[int] = []
            self.restored: Dict = {}

        def after_step(self, ctx) -> None:
            assert ctx.train and ctx.out["encoder_out"].size(0) == len(ctx.batch["supervisions"]["cut"])
            self.steps.append(ctx.step)

        def state_dict(self) -> Dict:
            return {"steps": list(self.steps)}

        def load_state_dict(self, state: Dict) -> None:
            self.restored = state

    trainer = TinyTrainer(tmp_path)
    first = Counting()
    add_addon(monkeypatch, first)
    ckpt = trainer.run("exp", [])
    assert first.steps == list(range(ckpt["batch_idx_train"]))
    assert ckpt["addons"] == {"counting": {"steps": first.steps}}
    again = Counting()
    monkeypatch.undo()
    add_addon(monkeypatch, again)
    trainer.run("exp", ["train.num_epochs=2"])
    assert again.restored == {"steps": first.steps}


def test_train_log_has_periodic_lines_and_no_progress_bar(tmp_path: Path, one_thread) -> None:
    """icefall-style lines every train.log_interval steps; no carriage-return progress bar in the log (tqdm only
    draws on a terminal)."""
    trainer = TinyTrainer(tmp_path)
    trainer.run("exp", ["train.log_interval=2", "train.progress_bar=true"])
    log = train_log(tmp_path / "exp")
    assert "\r" not in log
    assert "Epoch 1, batch 1, step 2, loss " in log and "Epoch 1, batch 3, step 4, loss " in log
    assert ", lr " in log and "grad norm" in log


def test_config_records_the_revisions_that_trained(tmp_path: Path, monkeypatch) -> None:
    """config.yaml's env.git_revisions lists every revision an epoch was trained at: a resumed run adds its own;
    a rerun with nothing left to train leaves the record alone (RESULTS.md writers read it: serac.utils.provenance)."""
    import yaml

    from serac import utils

    trainer = TinyTrainer(tmp_path)
    env = lambda: yaml.safe_load((tmp_path / "exp/config.yaml").read_text())["env"]  # noqa: E731
    monkeypatch.setattr(utils, "git_revision", lambda: "aaaaaaa")
    trainer.run("exp", [])
    assert env()["git_revisions"] == ["aaaaaaa"]
    monkeypatch.setattr(utils, "git_revision", lambda: "bbbbbbb-dirty")
    trainer.run("exp", [])                       # epoch 1 of 1 done: nothing trains
    assert env()["git_revision"] == "aaaaaaa" and env()["git_revisions"] == ["aaaaaaa"]
    trainer.run("exp", ["train.num_epochs=2"])   # resumes for epoch 2
    assert env()["git_revision"] == "bbbbbbb-dirty" and env()["git_revisions"] == ["aaaaaaa", "bbbbbbb-dirty"]
    assert utils.provenance({"exp": tmp_path / "exp"}).endswith("`aaaaaaa then bbbbbbb-dirty`: exp.")


def test_objects_from_before_training_are_frozen_for_the_collector_while_it_runs(tmp_path: Path, one_thread) -> None:
    """The cyclic collector skips what existed when training started (full collections no longer traverse the
    model and the manifests) and gets it back when training ends, normally or by an exception."""
    import gc

    from serac.train.trainer import train

    trainer = TinyTrainer(tmp_path)
    frozen: List[int] = []
    train(trainer.args("exp"), trainer.config([]),
          on_epoch_end=lambda epoch, valid: frozen.append(gc.get_freeze_count()))
    assert frozen and min(frozen) > 1000
    assert gc.get_freeze_count() == 0

    def die(epoch, valid):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        train(trainer.args("exp2"), trainer.config([]), on_epoch_end=die)
    assert gc.get_freeze_count() == 0
