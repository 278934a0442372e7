"""The STS model through the one trainer (serac/train/trainer.py + serac/multitalker/training.py): built from a
config with a ``separator`` section, trained on tiny conversations (loss finite and decreasing), resumed exactly,
options that do not apply refused, and the loss of a channel nobody spoke on."""
from __future__ import annotations

import pytest
import torch

from sts_utils import TinyConversations

pytest.importorskip("fast_rnnt")


@pytest.fixture
def convs(tmp_path):
    torch.set_num_threads(1)
    return TinyConversations(tmp_path)


def test_trainer_builds_and_trains_an_sts_model(convs):
    from serac.checkpoint import load_checkpoint
    from serac.multitalker.model import SeparatorEncoder
    from serac.train.trainer import train

    result = train(convs.args("exp"), convs.config(["train.num_epochs=3"]))
    losses = [v["loss"] for v in result["valid"]]
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], losses
    ckpt = load_checkpoint(convs.tmp_path / "exp/epoch-3.pt")
    assert any(k.startswith("encoder.separator.") for k in ckpt["model"])
    assert ckpt["train_stats"]["utts"] == 6  # conversations, not channel rows

    # resume: epochs 1-2, then 3 from the checkpoint, equals the uninterrupted run
    train(convs.args("resumed"), convs.config(["train.num_epochs=2"]))
    train(convs.args("resumed"), convs.config(["train.num_epochs=3"]))
    again = load_checkpoint(convs.tmp_path / "resumed/epoch-3.pt")
    for name, value in ckpt["model"].items():
        torch.testing.assert_close(again["model"][name], value, msg=name)

    from serac.transducer.model import build_model
    model = build_model(ckpt["config"]["model"], 6, 6)
    assert isinstance(model.encoder, SeparatorEncoder)


def test_mt_rnnt_baseline_trains_without_turn_tokens(convs):
    from serac.train.trainer import train

    result = train(convs.args("mt"), convs.config(["train.num_epochs=1"], turn_tokens=False))
    assert torch.isfinite(torch.tensor(result["valid"][-1]["loss"]))


def test_speech_activity_term_is_trained_and_reported(convs):
    """sts.activity_scale with separator.activity_head: the validation line reports the term, it falls, the head is
    in the checkpoint; the scale without the head is a clear error before training."""
    from serac.checkpoint import load_checkpoint
    from serac.train.trainer import train

    cfg = convs.config(["train.num_epochs=3", "sts.activity_scale=1.0"])
    cfg["model"]["separator"]["activity_head"] = True
    result = train(convs.args("act"), cfg)
    activity = [v["activity_loss"] for v in result["valid"]]
    assert activity[-1] < activity[0], activity
    assert "encoder.activity.weight" in load_checkpoint(convs.tmp_path / "act/epoch-3.pt")["model"]

    with pytest.raises(ValueError, match="activity_head: true"):
        train(convs.args("no-head"), convs.config(["train.num_epochs=1", "sts.activity_scale=1.0"]))


@pytest.mark.parametrize("override,message", [
    ("loss.onset_margin=2", "loss.onset_margin \\(2\\) does not apply to an STS model"),
    ("arw.enabled=true", "arw.enabled \\(True\\) does not apply to an STS model"),
    ("sts.latency=1", "sts: unknown options \\['latency'\\]"),
])
def test_options_that_do_not_apply_are_refused(convs, override, message):
    from serac.train.trainer import train

    with pytest.raises(ValueError, match=message):
        train(convs.args("bad"), convs.config([override]))


def test_model_section_with_an_encoder_besides_the_separator_is_refused():
    from sts_utils import sts_model_section

    from serac.transducer.model import build_model

    cfg = {**sts_model_section()["model"], "encoder": {"name": "conformer"}}
    with pytest.raises(ValueError, match="drop model.encoder"):
        build_model(cfg, 6, 6)


def test_a_row_without_symbols_costs_its_all_blank_path():
    from serac.transducer.loss import pruned_rnnt_loss
    from serac.transducer.model import Joiner

    torch.manual_seed(0)
    joiner = Joiner(4, 4, 4, 5)
    am, lm = torch.randn(2, 6, 4), torch.randn(2, 3, 4)
    sam, slm = torch.randn(2, 6, 5), torch.randn(2, 3, 5)
    symbols = torch.tensor([[1, 2], [0, 0]])
    x_lens, y_lens = torch.tensor([6, 5]), torch.tensor([2, 0])
    seen = []
    hook = lambda px: (seen.append(px.shape), px)[1]  # noqa: E731
    simple, pruned = pruned_rnnt_loss(joiner.encoder_proj(am), joiner.decoder_proj(lm), sam, slm, joiner, symbols,
                                      x_lens, y_lens, prune_range=2, reduction="none", px_hook=hook)
    assert all(shape[0] == 2 for shape in seen)  # the hook sees the whole batch
    one_simple, one_pruned = pruned_rnnt_loss(joiner.encoder_proj(am[:1]), joiner.decoder_proj(lm[:1]), sam[:1],
                                              slm[:1], joiner, symbols[:1], x_lens[:1], y_lens[:1], prune_range=2,
                                              reduction="none")
    torch.testing.assert_close(pruned[0], one_pruned[0])
    torch.testing.assert_close(simple[0], one_simple[0])
    logits = joiner(joiner.encoder_proj(am[1, :5]), joiner.decoder_proj(lm[1, :1]), project_input=False)
    torch.testing.assert_close(pruned[1], -logits.log_softmax(-1)[:, 0].sum())


def test_turn_start_restriction_forbids_tokens_before_their_turn():
    from serac.multitalker.model import TurnLossConfig, turn_px_hook, turn_start_earliest
    from serac.multitalker.targets import ChannelTarget

    # channel 0: <sot> A <eot> (turn at 0.4 s), <sot> B <eot> (turn at 1.0 s); channel 1: empty; 40 ms frames
    ch0 = ChannelTarget([1, 3, 2, 1, 4, 2], ["t0", "t1"], [0.4, 1.0], [0.8, 1.4], [0, 3], [2, 5],
                        [0, 0, 0, 1, 1, 1])
    earliest = turn_start_earliest([[ch0, ChannelTarget()]], 0.01, 4, margin=2, encoder_frames=torch.tensor([50]))
    assert earliest.tolist() == [[8, 8, 8, 23, 23, 23], [0, 0, 0, 0, 0, 0]]
    hook = turn_px_hook(TurnLossConfig(), None, earliest)
    px = hook(torch.zeros(2, 6, 50))
    assert torch.isinf(px[0, 0, :8]).all() and torch.isfinite(px[0, 0, 8:]).all()
    assert torch.isinf(px[0, 3, :23]).all() and torch.isfinite(px[1]).all()
    # infeasible (six symbols cannot fit after frame 23 in 25 frames): relaxed rather than an infinite loss
    relaxed = turn_start_earliest([[ch0, ChannelTarget()]], 0.01, 4, margin=2, encoder_frames=torch.tensor([25]))
    assert relaxed.max() == 0


def test_channel_targets_record_each_tokens_turn(tmp_path):
    from serac.data.tokenizer import Tokenizer, prepare_word_lang
    from serac.multitalker.simulate import Turn
    from serac.multitalker.targets import channel_targets

    prepare_word_lang(["a b c"], tmp_path, extra_symbols=["<sot>", "<eot>"])
    tok = Tokenizer(tmp_path)
    turns = [Turn("x", "A", "a b", 0.0, 1.0), Turn("y", "B", "c", 0.5, 1.5), Turn("z", "A", "c a", 2.0, 3.0)]
    ch0, ch1 = channel_targets(turns, tok, "conv")
    assert ch0.token_turn == [0, 0, 0, 0, 1, 1, 1, 1] and ch1.token_turn == [0, 0, 0]
    plain0, _ = channel_targets(turns, tok, "conv", turn_tokens=False)
    assert plain0.token_turn == [0, 0, 1, 1]
