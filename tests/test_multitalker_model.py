"""The STS model (serac/multitalker/model.py): streaming == offline, FastEmit, and the end-of-turn latency penalty
lowering <eot> emission time on a toy problem."""
from __future__ import annotations

import pytest
import torch

from serac.multitalker.model import (SeparatorEncoder, TurnLossConfig, build_sts_model, eot_late_penalty, fastemit,
                                     flatten_channel_targets, sts_loss)
from serac.multitalker.targets import ChannelTarget
from serac.transducer.loss import require_backend

pytest.importorskip("fast_rnnt")

LSTM_TAIL = {"name": "lstm", "hidden_dim": 24, "num_layers": 1, "output_dim": 16, "subsampling_factor": 1,
             "dropout": 0.0}


def tiny_config(mixture=None):
    return {"separator": {"mixture_encoder": mixture or {"name": "lstm", "hidden_dim": 32, "num_layers": 1,
                                                         "output_dim": 32, "dropout": 0.0},
                          "tail_encoder": LSTM_TAIL, "separator_dim": 24},
            "decoder_dim": 16, "joiner_dim": 16}


def stream_in_chunks(enc: SeparatorEncoder, x: torch.Tensor, chunk: int = 16, last: int = 80) -> torch.Tensor:
    """The encoder's output streamed in ``chunk``-frame pieces up to frame ``last``, then the final piece."""
    state, chunks = enc.init_state(x.size(0), x.device), []
    with torch.no_grad():
        for start in range(0, last, chunk):
            y, state = enc.streaming_forward(x[:, start:start + chunk], state)
            chunks.append(y)
        y, state = enc.streaming_forward_final(x[:, last:], state)
        chunks.append(y)
    return torch.cat(chunks, dim=1)


@pytest.mark.parametrize("subsampling", ["stack", "conv2d"])
def test_streaming_chunks_equal_full_utterance(subsampling):
    torch.manual_seed(0)
    enc = SeparatorEncoder(8, {"name": "lstm", "hidden_dim": 32, "num_layers": 2, "output_dim": 32,
                               "dropout": 0.0, "subsampling": subsampling}, LSTM_TAIL, separator_dim=24).eval()
    x = torch.randn(3, 96, 8)
    full, lens = enc(x, torch.tensor([96, 96, 96]))
    assert full.shape == (6, 24, 16) and lens.tolist() == [24] * 6
    assert not torch.allclose(full[0], full[1])  # the two channels of one mixture differ (channel embedding)
    torch.testing.assert_close(stream_in_chunks(enc, x), full.detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tail", [None, LSTM_TAIL])
def test_residual_separator_starts_as_the_mixture_encoder_and_streams(tail):
    """residual: channel = mixture encoding + a zero-initialised projection of the separator, so without a tail
    both channels start equal to the mixture encoder's output (what initialising from a single-talker model
    relies on); once the projection has learned something the channels differ; streaming == offline."""
    torch.manual_seed(0)
    mixture = {"name": "lstm", "hidden_dim": 32, "num_layers": 1, "output_dim": 16, "dropout": 0.0}
    enc = SeparatorEncoder(8, mixture, tail, separator_dim=24, residual=True).eval()
    x, x_lens = torch.randn(2, 96, 8), torch.tensor([96, 96])
    with torch.no_grad():
        full, lens = enc(x, x_lens)
        h, _ = enc.mixture(x, x_lens)
        if tail is None:
            assert enc.output_dim == 16 and full.shape == (4, 24, 16)
            torch.testing.assert_close(full, h.repeat_interleave(2, dim=0))
        torch.nn.init.normal_(enc.residual_proj.weight)
        full, lens = enc(x, x_lens)
    assert not torch.allclose(full[0], full[1])
    torch.testing.assert_close(stream_in_chunks(enc, x), full, atol=1e-5, rtol=1e-4)


def test_tail_must_not_subsample():
    with pytest.raises(ValueError, match="subsampling_factor must be 1"):
        SeparatorEncoder(8, {"name": "lstm", "hidden_dim": 8}, {"name": "lstm", "hidden_dim": 8})


def test_fastemit_scales_the_emission_gradient_only():
    px = torch.tensor([[[-1.0, -2.0, float("-inf")]]], requires_grad=True)
    out = fastemit(px, 0.5)
    assert torch.equal(out.detach(), px.detach())
    out.masked_fill(~torch.isfinite(out), 0.0).sum().backward()
    assert px.grad.tolist() == [[[1.5, 1.5, 0.0]]]


def test_eot_penalty_only_on_late_eot():
    px = torch.zeros(1, 3, 6)
    end = torch.tensor([[-1, 2, -1]])  # symbol 1 is an <eot> whose turn ends at frame 2
    out = eot_late_penalty(px, end, penalty=0.5, tolerance=1)
    assert out[0, 1].tolist() == [0.0, 0.0, 0.0, 0.0, -0.5, -1.0]
    assert out[0, 0].abs().sum() == 0 and out[0, 2].abs().sum() == 0


SOT, EOT, WORD_A, WORD_B = 1, 2, 3, 4
FRAME_S, SUB = 0.01, 4


def toy_batch(num: int = 8):
    """Two talkers per mixture: talker 1 lights feature dims 0-3 while active, talker 2 dims 4-7 (plus noise);
    channel 0 = [<sot> A <eot>], channel 1 = [<sot> B <eot>], turns ending at different frames. Each talker's
    features stay lit 16 input frames (4 encoder frames) past the reference turn end, as a trailing breath or
    reverberation would: a model that waits for the features to fade closes its turns late."""
    g = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(num, 96, 8, generator=g)
    targets = []
    for i in range(num):
        a = (4 + i, 40 + 4 * i)               # input frames
        b = (30 + 2 * i, 56 + 3 * i)
        x[i, a[0]:a[1] + 16, :4] += 1.0
        x[i, b[0]:b[1] + 16, 4:] += 1.0
        targets.append([ChannelTarget([SOT, WORD_A, EOT], ["a"], [a[0] * FRAME_S], [a[1] * FRAME_S], [0], [2]),
                        ChannelTarget([SOT, WORD_B, EOT], ["b"], [b[0] * FRAME_S], [b[1] * FRAME_S], [0], [2])])
    return x, torch.full((num,), 96), targets


def expected_eot_lateness(model, x, x_lens, targets) -> float:
    """Mean over <eot> symbols of (expected emission frame under the full lattice's posterior - reference end
    frame), in encoder frames."""
    k = require_backend()
    tokens, end_frame = flatten_channel_targets(targets, FRAME_S, SUB)
    with torch.no_grad():
        enc, enc_lens = model.encode(x, x_lens)
        symbols = torch.tensor(tokens)
        dec = model.decoder(torch.nn.functional.pad(symbols, (1, 0), value=0))
        logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))
        boundary = torch.zeros(len(tokens), 4, dtype=torch.int64)
        boundary[:, 2] = symbols.size(1)
        boundary[:, 3] = enc_lens
        px, py = k.get_rnnt_logprobs_joint(logits=logits, symbols=symbols, termination_symbol=0,
                                           boundary=boundary, rnnt_type="modified")
    _, (px_grad, _) = k.mutual_information_recursion(px=px, py=py, boundary=boundary, return_grad=True)
    frames = torch.arange(px_grad.size(2), dtype=torch.float32)
    expected = (px_grad * frames).sum(2)                # (rows, S): expected frame of each symbol
    is_eot = end_frame >= 0
    return float((expected[is_eot] - end_frame[is_eot].float()).mean())


def train_toy(config: TurnLossConfig, steps: int = 60) -> float:
    torch.manual_seed(0)
    model = build_sts_model(tiny_config(), num_features=8, vocab_size=5)
    x, x_lens, targets = toy_batch()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        out = sts_loss(model, x, x_lens, targets, config, frame_shift_s=FRAME_S, prune_range=3)
        loss = 0.5 * out["simple_loss"] + out["pruned_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return expected_eot_lateness(model, x, x_lens, targets)


def test_latency_penalty_lowers_eot_emission_time():
    torch.set_num_threads(1)
    plain = train_toy(TurnLossConfig())
    penalised = train_toy(TurnLossConfig(eot_penalty=1.0))
    assert plain > 1.0, plain                           # without it the toy model closes turns late (waits)
    assert penalised < plain - 2.0, (plain, penalised)  # measured: 2.2 frames late without, 2.8 early with


def test_sts_loss_checks_channels_and_fastemit_keeps_the_loss_value():
    torch.manual_seed(0)
    model = build_sts_model(tiny_config(), num_features=8, vocab_size=5)
    x, x_lens, targets = toy_batch(2)
    with pytest.raises(ValueError, match="batch item 1: 1 channel targets, the model has 2 channels"):
        sts_loss(model, x, x_lens, [targets[0], targets[1][:1]], TurnLossConfig())
    plain = sts_loss(model, x, x_lens, targets, TurnLossConfig(), frame_shift_s=FRAME_S)
    emit = sts_loss(model, x, x_lens, targets, TurnLossConfig(fastemit_lambda=0.01), frame_shift_s=FRAME_S)
    torch.testing.assert_close(plain["pruned_loss"], emit["pruned_loss"])
    late = sts_loss(model, x, x_lens, targets, TurnLossConfig(eot_penalty=1.0), frame_shift_s=FRAME_S)
    assert late["simple_loss"] > plain["simple_loss"]  # late alignments cost more


def test_build_sts_model_rejects_unknown_options():
    with pytest.raises(ValueError, match="needs a 'separator' section"):
        build_sts_model({"encoder": {}}, 8, 5)
    with pytest.raises(ValueError, match=r"unknown STS model options \['foo'\]"):
        build_sts_model({**tiny_config(), "foo": 1}, 8, 5)



def test_channel_activity_marks_the_frames_inside_each_channels_turns():
    from serac.multitalker.model import channel_activity

    # encoder frames of 40 ms (10 ms x 4): centres at 20, 60, 100, ... ms
    ch0 = ChannelTarget([1, 2], ["t1", "t2"], [0.05, 0.30], [0.15, 0.40], [], [])
    ch1 = ChannelTarget([3], ["t3"], [0.10], [0.35], [], [])
    active = channel_activity([[ch0, ch1], [ChannelTarget(), ChannelTarget()]], 0.01, 4, 12)
    assert active.shape == (4, 12)
    # centres 60, 100, 140 ms in [50, 150); 300, 340, 380 ms in [300, 400)
    assert active[0].nonzero().flatten().tolist() == [1, 2, 3, 7, 8, 9]
    assert active[1].nonzero().flatten().tolist() == [2, 3, 4, 5, 6, 7, 8]  # 100 .. 340 ms in [100, 350)
    assert active[2:].sum() == 0                                          # a conversation's silent channels


def test_activity_head_learns_each_channels_speech_activity():
    """On the toy problem the activity term trains the head to say when each channel's talker speaks; without an
    activity head the term is a clear error."""
    from serac.multitalker.model import channel_activity

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg["separator"]["activity_head"] = True
    model = build_sts_model(cfg, num_features=8, vocab_size=5)
    x, x_lens, targets = toy_batch()
    config = TurnLossConfig(activity_scale=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(60):
        out = sts_loss(model, x, x_lens, targets, config, frame_shift_s=FRAME_S, prune_range=3)
        first = float(out["activity_loss"]) if first is None else first
        loss = 0.5 * out["simple_loss"] + out["pruned_loss"] + out["activity_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(out["activity_loss"]) < 0.5 * first, (first, float(out["activity_loss"]))
    with torch.no_grad():
        enc, enc_lens = model.encode(x, x_lens)
        predicted = model.encoder.activity(enc).squeeze(-1) > 0
    truth = channel_activity(targets, FRAME_S, SUB, enc.size(1)).bool()
    assert (predicted == truth).float().mean() > 0.85

    plain = build_sts_model(tiny_config(), num_features=8, vocab_size=5)
    with pytest.raises(ValueError, match="activity_head: true"):
        sts_loss(plain, x, x_lens, targets, config, frame_shift_s=FRAME_S, prune_range=3)
