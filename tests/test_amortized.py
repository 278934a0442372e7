"""The compute-cost amortized Transformer (serac/encoders/amortized_transformer.py): skipping is real (a module
never sees the frames whose gate is off), gates are deterministic at eval, the cost term trains the arbitrators,
the FLOP count is what FlopCounterMode sees, streaming equals full encoding with mixed gates, a dense checkpoint
loads for fine-tuning, and a larger cost weight gives a smaller executed fraction.

Usage:
  python -m pytest -q tests/test_amortized.py
"""
from __future__ import annotations

from typing import List

import pytest
import torch
from torch import nn

from serac.encoders import build_encoder
from serac.encoders.cost import encoder_flops_per_second

NUM_FEATURES = 80
SMALL = dict(name="amortized_transformer", dim=16, num_layers=3, num_heads=2, ffn_dim=32, subsampling_channels=4,
             chunk_size=2, left_context=3, output_dim=8, arbitrator_dim=8, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def mixed_gate_encoder(seed: int = 0, **kwargs) -> nn.Module:
    """A small encoder whose arbitrators turn roughly half of the modules off, with logits far from the
    threshold (|logit| ~ 1), so float rounding cannot flip a gate between two equivalent computations."""
    torch.manual_seed(seed)
    encoder = build_encoder(NUM_FEATURES, {**SMALL, **kwargs}).eval()
    with torch.no_grad():
        for block in encoder.blocks:
            nn.init.normal_(block.arbitrator.out.weight, std=2.0)
            block.arbitrator.out.bias.fill_(-0.3)
    return encoder


def gates_on(encoder) -> torch.Tensor:
    """(blocks, 2) number of frames whose MHA / FFN gate was on in the last forward."""
    return torch.stack([g.sum((0, 1)) for g in encoder.last_gates])


class RowSpy(nn.Module):
    """Wraps a module and records how many rows (frames) each call hands it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.rows: List[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.numel() // x.size(-1))
        return self.module(x)


@torch.no_grad()
def test_skipped_frames_never_reach_the_modules():
    encoder = mixed_gate_encoder()
    spies = []
    for block in encoder.blocks:
        block.ffn = RowSpy(block.ffn)
        block.attn.in_proj = RowSpy(block.attn.in_proj)
        block.attn.out_proj = RowSpy(block.attn.out_proj)
        spies.append((block.attn.in_proj, block.attn.out_proj, block.ffn))
    x = torch.randn(2, 160, NUM_FEATURES, generator=torch.Generator().manual_seed(1))
    encoder(x, torch.tensor([160, 111]))
    on = gates_on(encoder)
    total = 40 + 111 // 4
    assert 0.2 * total < on.float().mean() < 0.8 * total, "the test needs gates both on and off"
    for (in_spy, out_spy, ffn_spy), (mha_on, ffn_on) in zip(spies, on.tolist()):
        assert sum(in_spy.rows) == sum(out_spy.rows) == mha_on
        assert sum(ffn_spy.rows) == ffn_on
    # padded frames are never computed either
    assert all(int(g[1, 111 // 4:].sum()) == 0 for g in encoder.last_gates)


# left_context 3 is not a multiple of chunk_size 2 (frame-row gathers), 4 is (chunk-block gathers)
@pytest.mark.parametrize("left_context", [3, 4])
@torch.no_grad()
def test_gathered_equals_masked_dense_computation(left_context):
    encoder = mixed_gate_encoder(left_context=left_context)
    x = torch.randn(3, 130, NUM_FEATURES, generator=torch.Generator().manual_seed(2))
    lens = torch.tensor([130, 77, 40])
    y, _ = encoder(x, lens)
    encoder.set_gather(False)
    y_masked, _ = encoder(x, lens)
    torch.testing.assert_close(y, y_masked, atol=1e-5, rtol=0)


def test_gates_deterministic_at_eval_stochastic_in_training():
    encoder = mixed_gate_encoder()
    x = torch.randn(2, 96, NUM_FEATURES, generator=torch.Generator().manual_seed(3))
    lens = torch.tensor([96, 96])
    with torch.no_grad():
        y1, _ = encoder(x, lens)
        g1 = [g.clone() for g in encoder.last_gates]
        torch.manual_seed(123)  # eval gates use no randomness
        y2, _ = encoder(x, lens)
    assert all(torch.equal(a, b) for a, b in zip(g1, encoder.last_gates))
    assert torch.equal(y1, y2)
    encoder.train()
    torch.manual_seed(0)
    encoder(x, lens)
    t1 = [g.clone() for g in encoder.last_gates]
    torch.manual_seed(1)
    encoder(x, lens)
    assert any(not torch.equal(a, b) for a, b in zip(t1, encoder.last_gates))


def test_cost_gradient_reaches_the_arbitrators_only():
    encoder = mixed_gate_encoder(cost_weight=1.0).train()
    x = torch.randn(2, 96, NUM_FEATURES)
    encoder(x, torch.tensor([96, 60]))
    assert encoder.aux_loss is not None and encoder.aux_loss.requires_grad
    assert 0.0 < float(encoder.aux_loss.detach()) < 1.2
    encoder.aux_loss.backward()
    for name, p in encoder.named_parameters():
        if ".arbitrator." in name and name.endswith(("out.weight", "out.bias", "hidden.weight")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the cost sees the modules only through later arbitrators' inputs: nothing after the last arbitrator
    last = len(encoder.blocks) - 1
    for name, p in encoder.named_parameters():
        if name.startswith(("out.", "norm_out.", f"blocks.{last}.ffn", f"blocks.{last}.attn")):
            assert p.grad is None or p.grad.abs().sum() == 0, name


def test_straight_through_gate_gradient_reaches_the_arbitrators():
    """The task loss alone (no cost term) trains the arbitrators through the straight-through gates."""
    encoder = mixed_gate_encoder(cost_weight=0.0).train()
    y, _ = encoder(torch.randn(2, 96, NUM_FEATURES), torch.tensor([96, 96]))
    y.pow(2).mean().backward()
    grads = [b.arbitrator.out.weight.grad for b in encoder.blocks]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("left_context", [3, 4])
@torch.no_grad()
def test_flop_count_is_what_runs(left_context):
    """The per-utterance count equals torch's FlopCounterMode on the gathered forward (mixed gates); without
    arbitrators it equals encoder_flops_per_second; the fraction is executed / dense."""
    from torch.utils.flop_counter import FlopCounterMode

    encoder = mixed_gate_encoder(left_context=left_context)
    x = torch.randn(1, 128, NUM_FEATURES, generator=torch.Generator().manual_seed(4))
    with FlopCounterMode(display=False) as counter:
        encoder(x, torch.tensor([128]))
    assert float(encoder.last_flops[0]) == counter.get_total_flops()
    assert float(encoder.last_flop_fraction[0]) == pytest.approx(float(encoder.last_flops[0]) / (32 * encoder.dense_flops_per_frame))
    assert 0.2 < float(encoder.last_flop_fraction[0]) < 0.9
    torch.manual_seed(0)
    dense = build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False, "left_context": left_context})
    assert encoder_flops_per_second(dense) == pytest.approx(25 * dense.dense_flops_per_frame)
    dense.eval()(x, torch.tensor([128]))
    assert float(dense.last_flop_fraction[0]) == 1.0 and dense.aux_loss is None


@pytest.mark.parametrize("left_context", [3, 4])
@torch.no_grad()
def test_streaming_equals_full_with_mixed_gates(left_context):
    encoder = mixed_gate_encoder(left_context=left_context)
    m = encoder.chunk_multiple
    x = torch.randn(2, 20 * m, NUM_FEATURES, generator=torch.Generator().manual_seed(5))
    y_full, _ = encoder(x, torch.tensor([20 * m, 20 * m]))
    full_flops = encoder.last_flops.clone()
    full_gates = [g.clone() for g in encoder.last_gates]
    state = encoder.init_state(2, x.device)
    outputs, flops, gates, start, i = [], torch.zeros(2, dtype=torch.float64), [], 0, 0
    while start < x.size(1):
        length = [m, 3 * m, 2 * m][i % 3]
        y, state = encoder.streaming_forward(x[:, start:start + length], state)
        outputs.append(y)
        flops += encoder.last_flops
        gates.append(torch.stack(encoder.last_gates))
        start, i = start + length, i + 1
    torch.testing.assert_close(torch.cat(outputs, dim=1), y_full, atol=1e-4, rtol=0)
    assert torch.equal(torch.cat(gates, dim=2), torch.stack(full_gates))
    torch.testing.assert_close(flops, full_flops)


@torch.no_grad()
def test_look_ahead_with_mixed_gates():
    encoder = mixed_gate_encoder()
    t_total = 96
    x = torch.randn(1, t_total, NUM_FEATURES, generator=torch.Generator().manual_seed(6))
    y, _ = encoder(x, torch.tensor([t_total]))
    for t in [0, 7, 17, 40, 63]:
        x_changed = x.clone()
        x_changed[:, t + encoder.look_ahead + 1:] += 10.0
        y_changed, _ = encoder(x_changed, torch.tensor([t_total]))
        covering = t // 4 + 1
        torch.testing.assert_close(y_changed[:, :covering], y[:, :covering], atol=1e-5, rtol=0)


def test_dense_checkpoint_loads_for_fine_tuning():
    """A checkpoint without arbitrators loads strictly into the amortized model; with every gate on it computes
    exactly the dense model."""
    torch.manual_seed(0)
    dense = build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False}).eval()
    amortized = build_encoder(NUM_FEATURES, {**SMALL, "gate_init_bias": 50.0}).eval()
    amortized.load_state_dict(dense.state_dict())
    x = torch.randn(2, 64, NUM_FEATURES)
    with torch.no_grad():
        y, y_dense = amortized(x, torch.tensor([64, 50]))[0], dense(x, torch.tensor([64, 50]))[0]
    # padding frames are skipped by the amortized model (their values are never used): compare valid frames
    torch.testing.assert_close(y[0], y_dense[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1, :50 // 4], y_dense[1, :50 // 4], atol=1e-5, rtol=0)
    assert all(bool(g[0].all()) for g in amortized.last_gates)
    bad = {k: v for k, v in build_encoder(NUM_FEATURES, SMALL).state_dict().items() if "blocks.0.arbitrator" not in k}
    with pytest.raises(RuntimeError):  # a partial arbitrator set is an error, not silently re-initialised
        amortized.load_state_dict(bad)


def test_transducer_loss_carries_the_cost_term():
    from serac.transducer.model import build_model

    torch.manual_seed(0)
    model = build_model({"encoder": {**SMALL, "cost_weight": 0.7}, "decoder_dim": 8, "joiner_dim": 8},
                        num_features=NUM_FEATURES, vocab_size=5)
    out = model(torch.randn(2, 64, NUM_FEATURES), torch.tensor([64, 48]), [[1, 2], [3]])
    assert "aux_loss" in out and out["aux_loss"].requires_grad
    assert float(out["aux_loss"].detach()) == pytest.approx(0.7 * float(model.encoder.last_flops.sum()
                                                               / model.encoder.last_dense_flops.sum()), rel=1e-5)


def executed_fraction_after_training(cost_weight: float, steps: int = 40) -> float:
    """A toy problem: regress the encoder output onto a fixed random target, plus the cost term."""
    torch.manual_seed(0)
    encoder = build_encoder(NUM_FEATURES, {**SMALL, "cost_weight": cost_weight, "gate_init_bias": 1.0})
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 96, NUM_FEATURES, generator=g)
    lens = torch.tensor([96, 96, 80, 64])
    target = torch.randn(4, 24, 8, generator=g)
    opt = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    encoder.train()
    for _ in range(steps):
        y, _ = encoder(x, lens)
        loss = (y - target).pow(2).mean() + encoder.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.eval()
    with torch.no_grad():
        encoder(x, lens)
    return float(encoder.last_flops.sum() / encoder.last_dense_flops.sum())


def test_cost_weight_lowers_the_executed_fraction():
    free, costly = executed_fraction_after_training(0.0), executed_fraction_after_training(5.0)
    assert costly < free - 0.2, (free, costly)


@torch.no_grad()
def test_full_context_checkpoint_loads_into_a_sliding_window():
    """The sliding-window baseline is fine-tuned from the full-context model: the relative-position bias table is
    cropped to the nearer distances, so the first chunk (no left context to lose yet) encodes identically."""
    torch.manual_seed(0)
    full = build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False, "left_context": 6}).eval()
    window = build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False, "left_context": 1}).eval()
    window.load_state_dict(full.state_dict())
    x = torch.randn(1, 64, NUM_FEATURES)
    y_full, y_window = full(x, torch.tensor([64]))[0], window(x, torch.tensor([64]))[0]
    torch.testing.assert_close(y_window[:, :2], y_full[:, :2], atol=1e-5, rtol=0)
    assert not torch.allclose(y_window, y_full, atol=1e-3)


@torch.no_grad()
def test_time_encoders_reports_each_blocks_on_fraction_over_valid_frames():
    """serac.encoders.cost.time_encoders' per-block gate fractions (RESULTS.md's "where the arbitrators run the modules")
    count valid frames only: a block forced MHA-on / FFN-off reads exactly 1 / 0 on a padded batch, the others
    match the gates of each utterance encoded on its own."""
    from serac.encoders.cost import time_encoders

    encoder = mixed_gate_encoder(seed=3)
    nn.init.zeros_(encoder.blocks[0].arbitrator.out.weight)
    encoder.blocks[0].arbitrator.out.bias.copy_(torch.tensor([5.0, -5.0]))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def encode(self, x, x_lens):
            return self.encoder(x, x_lens)

    torch.manual_seed(0)
    lens = [torch.tensor([64, 37]), torch.tensor([50])]
    batches = [(torch.randn(len(l), int(l.max()), NUM_FEATURES), l) for l in lens]
    t = time_encoders({"m": Model()}, batches, repeats=1)["m"]
    on, frames = torch.zeros(len(encoder.blocks), 2), 0
    for feats, l in batches:
        for i, n in enumerate(l.tolist()):
            encoder(feats[i: i + 1, :n], torch.tensor([n]))
            on += gates_on(encoder)
            frames += n // 4
    assert t["gate_frames"] == frames == 16 + 9 + 12
    assert t["gate_on_fraction"][0] == [1.0, 0.0]
    assert torch.allclose(torch.tensor(t["gate_on_fraction"]), on / frames)
    assert 0.1 < float(on[1:].mean() / frames) < 0.9   # the other blocks really are mixed


@torch.no_grad()
def test_static_skip_drops_modules_on_every_frame_and_counts_it():
    """The static baseline: named modules never run (FlopCounterMode agrees with the count), the others compute
    exactly what the dense encoder computes; module frames say so; bad names and arbitrators are errors."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    dense = build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False}).eval()
    static = build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False, "static_skip": ["mha1", "ffn3"]}).eval()
    static.load_state_dict(dense.state_dict())
    x = torch.randn(2, 96, NUM_FEATURES, generator=torch.Generator().manual_seed(3))
    lens = torch.tensor([96, 64])
    with FlopCounterMode(display=False) as counter:
        y, _ = static(x, lens)
    assert float(static.last_flops.sum()) == counter.get_total_flops() * (24 + 16) / 48  # per valid frame
    b = static.blocks[0]
    saved = (b.mha_flops + b.ffn_flops) / static.dense_flops_per_frame
    assert static.last_flop_fraction.tolist() == pytest.approx([1 - saved] * 2)
    assert static.last_module_frames[:, :, 0].tolist() == [[0, 24, 24], [0, 16, 16]]
    assert static.last_module_frames[:, :, 1].tolist() == [[24, 24, 0], [16, 16, 0]]
    # the same as the dense encoder with those two modules zeroed out
    with torch.no_grad():
        dense.blocks[0].attn.out_proj.weight.zero_()
        dense.blocks[0].attn.out_proj.bias.zero_()
        dense.blocks[2].ffn.net[-2].weight.zero_()
        dense.blocks[2].ffn.net[-2].bias.zero_()
    torch.testing.assert_close(y, dense(x, lens)[0])
    with pytest.raises(ValueError, match="mha4"):
        build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False, "static_skip": ["mha4"]})
    with pytest.raises(ValueError, match="arbitrators: false"):
        build_encoder(NUM_FEATURES, {**SMALL, "static_skip": "mha1"})


def test_gate_warmup_forces_gates_on_then_ramps_the_cost():
    """Joint training: during the warm-up every gate is on and the cost term is 0 (no gradient to the
    arbitrators from it); then the cost weight ramps linearly; evaluation uses the learned gates."""
    encoder = mixed_gate_encoder(cost_weight=1.0, gate_warmup_steps=10, cost_ramp_steps=4).train()
    x, lens = torch.randn(2, 96, NUM_FEATURES), torch.tensor([96, 60])
    encoder.set_train_step(9)
    encoder(x, lens)
    assert all(bool(g[0, :24].all()) and bool(g[1, :15].all()) for g in encoder.last_gates)
    assert float(encoder.last_flop_fraction.min()) == pytest.approx(1.0 + encoder.blocks[0].arbitrator_flops
                                                                   * 3 / encoder.dense_flops_per_frame)
    assert float(encoder.aux_loss) == 0.0 and not encoder.aux_loss.requires_grad  # the arbitrators are idle
    for step, scale in [(10, 0.25), (11, 0.5), (13, 1.0), (100, 1.0)]:
        encoder.set_train_step(step)
        torch.manual_seed(0)
        encoder(x, lens)
        fraction = float(encoder.last_flops.sum() / encoder.last_dense_flops.sum())
        assert float(encoder.aux_loss.detach()) == pytest.approx(scale * fraction, rel=1e-5), step
    encoder.set_train_step(0)
    encoder.eval()
    with torch.no_grad():
        encoder(x, lens)
    assert float(encoder.last_flop_fraction.max()) < 0.9  # the learned (mixed) gates, not the warm-up's
    with pytest.raises(ValueError, match="need arbitrators"):
        build_encoder(NUM_FEATURES, {**SMALL, "arbitrators": False, "gate_warmup_steps": 5})


def test_training_uses_the_blocked_attention_with_the_same_output():
    """Training runs the blocked attention form (faster), evaluation one window per chunk (what the FLOP count
    counts); in training both give the same output with the same Gumbel noise."""
    encoder = mixed_gate_encoder(left_context=4, chunk_size=2).train()
    assert all(b.attn.block_frames > 0 for b in encoder.blocks)
    x, lens = torch.randn(2, 200, NUM_FEATURES), torch.tensor([200, 120])
    torch.manual_seed(5)
    y_blocked, _ = encoder(x, lens)
    for b in encoder.blocks:
        b.attn.block_frames = 0
    torch.manual_seed(5)
    y_windows, _ = encoder(x, lens)
    torch.testing.assert_close(y_blocked, y_windows)
    encoder.eval()
    assert all(b.attn.block_frames == 0 for b in encoder.blocks)
    encoder.train()
    assert all(b.attn.block_frames > 0 for b in encoder.blocks)


def test_trainer_drives_the_gate_warmup():
    """compute_loss hands the encoder its step: in the warm-up the loss carries no cost term and every gate runs;
    after it the cost term is in the loss."""
    from serac.config import load_config
    from serac.train.trainer import compute_loss
    from serac.transducer.model import build_model

    class Tok:
        def encode(self, text):
            return [int(c) for c in text.split()]

    torch.manual_seed(0)
    model = build_model({"encoder": {**SMALL, "cost_weight": 1.0, "gate_warmup_steps": 5},
                         "decoder_dim": 8, "joiner_dim": 8}, num_features=NUM_FEATURES, vocab_size=5)
    batch = {"inputs": torch.randn(2, 64, NUM_FEATURES),
             "supervisions": {"num_frames": torch.tensor([64, 48]), "text": ["1 2", "3"]}}
    cfg = load_config(None, [])
    dev = torch.device("cpu")
    _, warm = compute_loss(model, batch, Tok(), cfg, step=4, device=dev, train=True)
    assert warm["aux_loss"] == 0.0 and model.encoder.blocks[0].gates_forced_on
    _, after = compute_loss(model, batch, Tok(), cfg, step=5, device=dev, train=True)
    assert after["aux_loss"] > 0.5 * after["frames"] and not model.encoder.blocks[0].gates_forced_on


def test_compute_tsv_has_per_block_module_frames(tmp_path):
    from serac.decode.results import write_compute

    stats = write_compute(tmp_path / "c.tsv", [("b", 10, 50.0, 100.0, [[10, 4], [0, 10]]),
                                               ("a", 5, 25.0, 50.0, [[5, 5], [5, 0]])])
    lines = (tmp_path / "c.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["cut_id", "frames", "flops", "dense_flops", "flop_fraction", "mha_frames",
                                    "ffn_frames"]
    assert lines[1].split("\t") == ["a", "5", "25", "50", "0.5000", "5 5", "5 0"]
    assert lines[2].split("\t")[5:] == ["10 0", "4 10"]
    assert stats["flop_fraction"] == 0.5
    write_compute(tmp_path / "d.tsv", [("a", 5, 25.0, 50.0)])
    assert (tmp_path / "d.tsv").read_text().splitlines()[0].split("\t")[-1] == "flop_fraction"
