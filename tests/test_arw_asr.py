"""Adversarial reweighting as a transducer-training add-on (serac/train/arw_addon.py), on the tiny trainer of
tests/trainer_utils.py: off is plain training bit for bit; weights positive with mean 1; the adversary's step raises
the weighted loss and the learner's lowers it; resume restores the adversary exactly; the adversary's inputs come
from features and lengths only."""
from __future__ import annotations

import inspect

import pytest
import torch

from trainer_utils import TinyTrainer

# batches of several utterances (the tiny trainer's default batches hold one: weights of mean 1 are then all 1)
ARW = ["data.max_duration=2.0", "arw.enabled=true", "arw.warmup_steps=0", "arw.lr=0.05", "arw.hidden_dim=8",
       "arw.inputs=[features,encoder,label_length]"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_arw_off_is_plain_training(tmp_path):
    tiny = TinyTrainer(tmp_path)
    plain = tiny.run("plain", [])
    off = tiny.run("off", ["arw.enabled=false", "arw.lr=0.5", "arw.warmup_steps=0", "arw.inputs=[encoder]"])
    assert params_equal(plain["model"], off["model"])
    assert off["addons"] == {}


def first_batch_trainer(tiny: TinyTrainer, extra):
    from serac.train.trainer import Trainer

    trainer = Trainer(tiny.args("game"), tiny.config(["train.num_epochs=1"] + extra))
    (arw,) = [a for a in trainer.addons if a.name == "arw"]
    return trainer, arw, next(iter(trainer.train_dl))


def weighted_loss(trainer, batch, arw):
    """(per-utterance losses, the weights the learner gets, the adversary's inputs) for ``batch``, no update."""
    from serac.train.trainer import loss_in_context

    with torch.no_grad():
        _, _, ctx = loss_in_context(trainer.model, batch, trainer.tokenizer, trainer.cfg, trainer.batch_idx_train,
                                    trainer.device, train=True, addons=[arw])
    inputs, arw._adv_input = arw._adv_input, None
    return ctx.utterance_losses, ctx.utterance_weights, inputs


def test_adversary_raises_and_learner_lowers_the_weighted_loss(tmp_path):
    tiny = TinyTrainer(tmp_path)
    trainer, arw, batch = first_batch_trainer(tiny, ARW)
    assert len(batch["supervisions"]["text"]) >= 2
    losses0, weights0, inputs = weighted_loss(trainer, batch, arw)
    # the adversary starts neutral: every weight exactly 1
    assert torch.equal(weights0, torch.ones_like(weights0))
    trainer.train_step(batch)  # learner step on lambda * loss, then the adversary's step on the same forward
    losses1, _, _ = weighted_loss(trainer, batch, arw)
    with torch.no_grad():
        weights_after = arw.game.adversary(inputs)
    # learner: the weighted loss (the weights it was given) went down
    assert float((weights0 * losses1).mean()) < float((weights0 * losses0).mean())
    # adversary: on the losses it saw, its new weights give a larger weighted loss
    assert float((weights_after * losses0).mean()) > float((weights0 * losses0).mean())
    # the weights: positive, mean 1, above the floor's bound, no longer uniform
    assert bool((weights_after > 0.5 - 1e-6).all())
    assert float(weights_after.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(weights_after.max() - weights_after.min()) > 0


def test_weights_positive_mean_one_after_training(tmp_path):
    tiny = TinyTrainer(tmp_path)
    trainer, arw, batch = first_batch_trainer(tiny, ARW + ["arw.lr=0.5", "arw.floor=0.1"])
    for _ in range(5):
        trainer.train_step(batch)
    _, weights, _ = weighted_loss(trainer, batch, arw)
    assert bool((weights >= 0.1 / 1.1 - 1e-6).all())
    assert float(weights.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(weights.max() - weights.min()) > 1e-3


def test_warmup_gives_unit_weights_and_freezes_the_adversary(tmp_path):
    tiny = TinyTrainer(tmp_path)
    trainer, arw, batch = first_batch_trainer(tiny, ARW + ["arw.warmup_steps=3"])
    before = {k: v.clone() for k, v in arw.game.adversary.state_dict().items()}
    trainer.train_step(batch)
    assert params_equal(before, arw.game.adversary.state_dict())
    assert arw.epoch_summary() == "arw weights: warm-up"


def test_resume_restores_the_adversary_exactly(tmp_path):
    tiny = TinyTrainer(tmp_path)
    extra = ARW + ["arw.warmup_steps=2"]
    straight = tiny.run("straight", extra + ["train.num_epochs=2"])
    log = "".join(p.read_text() for p in (tmp_path / "straight" / "log").glob("train-*.log"))
    assert "epoch 2: train loss" in log and "; arw weights min " in log  # the epoch line reports the weights
    tiny.run("resumed", extra + ["train.num_epochs=1"])
    resumed = tiny.run("resumed", extra + ["train.num_epochs=2"])
    a, b = straight["addons"]["arw"], resumed["addons"]["arw"]
    assert params_equal(a["adversary"], b["adversary"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        assert params_equal(a["optimizer"]["state"][k], b["optimizer"]["state"][k])
    assert params_equal(straight["model"], resumed["model"])
    # the adversary has learned something (its last layer starts at zero)
    assert any(bool(v.abs().sum() > 0) for k, v in a["adversary"].items() if k.startswith("net.2"))


def test_adversary_inputs_never_see_cohort_fields():
    from serac.train.arw_addon import adversary_input_dim, adversary_inputs

    # by construction: the inputs are built from tensors only (no batch, no cuts, no supervisions)
    params = set(inspect.signature(adversary_inputs).parameters)
    assert params == {"inputs", "feats", "feat_lens", "encoder_out", "encoder_lens", "label_lens"}
    feats, lens = torch.randn(3, 7, 4), torch.tensor([7, 5, 2])
    enc, enc_lens = torch.randn(3, 4, 6), torch.tensor([4, 3, 1])
    x = adversary_inputs(["features", "encoder", "label_length"], feats, lens, enc, enc_lens, torch.tensor([1, 2, 3]))
    assert x.shape == (3, adversary_input_dim(["features", "encoder", "label_length"], 4, 6)) == (3, 21)
    # padding does not enter the pooled statistics
    assert torch.allclose(x[2, :4], feats[2, :2].mean(0))
    with pytest.raises(ValueError, match="unknown input 'speaker'"):
        adversary_inputs(["speaker"], feats, lens)
    with pytest.raises(ValueError, match="arw.inputs"):
        adversary_input_dim(["region"], 4, 6)


def test_adversary_weights_ignore_supervision_metadata(tmp_path):
    """Two batches that differ only in the cuts' speaker and custom cohort fields get the same weights."""
    import copy

    tiny = TinyTrainer(tmp_path)
    trainer, arw, batch = first_batch_trainer(tiny, ARW + ["arw.lr=0.5"])
    trainer.train_step(batch)
    relabelled = copy.copy(batch)
    relabelled["supervisions"] = dict(batch["supervisions"])
    cuts = []
    for cut in batch["supervisions"]["cut"]:
        cut = copy.deepcopy(cut)
        for sup in cut.supervisions:
            sup.speaker, sup.gender, sup.custom = "other", "f", {"region": "elsewhere", "accent": "x"}
        cuts.append(cut)
    relabelled["supervisions"]["cut"] = cuts
    _, w1, _ = weighted_loss(trainer, batch, arw)
    _, w2, _ = weighted_loss(trainer, relabelled, arw)
    assert torch.equal(w1, w2)


def test_saturated_adversary_keeps_mean_one():
    """Every sigmoid score underflows (a large negative bias): the weights still have mean 1 (log-space
    normalisation; the plain sum was clamped and gave weights of floor / (1 + floor))."""
    from serac.train.arw import Adversary

    adversary = Adversary(3, hidden_dim=0, floor=0.1)
    with torch.no_grad():
        adversary.net[-1].bias.fill_(-200.0)
        adversary.net[-1].weight.copy_(torch.tensor([[5.0, 0.0, 0.0]]))
    weights = adversary(torch.randn(6, 3))
    assert float(weights.mean()) == pytest.approx(1.0, abs=1e-5)
    assert bool((weights >= 0.1 / 1.1 - 1e-6).all())


def test_fairness_arw_config_inherits_the_baseline():
    from pathlib import Path

    from serac.config import load_config
    from serac.train.arw_addon import adversary_input_dim

    root = Path(__file__).resolve().parent.parent / "egs" / "synth_assistant"
    cfg = load_config(root / "fairness" / "conf" / "arw.yaml")
    baseline = load_config(root / "asr" / "conf" / "lstm.yaml")
    assert cfg["arw"]["enabled"] is True
    assert {k: v for k, v in cfg.items() if k != "arw"} == {k: v for k, v in baseline.items() if k != "arw"}
    assert adversary_input_dim(cfg["arw"]["inputs"], 80, cfg["model"]["encoder"]["output_dim"]) == 2 * 80 + 2 * 256 + 1
