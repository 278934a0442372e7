"""Encoder contract tests: declared look-ahead is exact (no dependence beyond it, and it is needed), chunk-by-chunk
streaming equals full-utterance encoding, padding never reaches valid frames, parameter and FLOP counts.

Small configs keep the suite fast; the default configs are checked for streaming and size too.
"""
from __future__ import annotations

from typing import Any, Dict, List

import pytest
import torch

from serac.encoders import available_encoders, build_encoder
from serac.encoders.cost import count_parameters, encoder_flops_per_second

NUM_FEATURES = 80

SMALL_CONFIGS: Dict[str, Dict[str, Any]] = {
    "lstm": dict(hidden_dim=16, num_layers=2, output_dim=8),
    # a variant of a registered encoder: "encoder" names the registry entry
    "lstm_conv2d": dict(encoder="lstm", subsampling="conv2d", conv_channels=4, hidden_dim=16, num_layers=2,
                        output_dim=8),
    "conv_rnnt": dict(local_channels=4, local_blocks=1, local_dim=16, global_channels=16, global_dilations=(1, 2, 4),
                      lstm_hidden=16, lstm_layers=2, output_dim=8),
    "conv_rnnt_skip": dict(encoder="conv_rnnt", local_channels=4, local_blocks=1, local_dim=16, global_channels=16,
                           global_dilations=(1, 2, 4), lstm_hidden=16, lstm_layers=2, output_dim=8, input_skip=True),
    # left_context not a multiple of chunk_size on purpose: the window is counted in frames, not chunks
    "conformer": dict(dim=16, num_layers=2, num_heads=2, ffn_dim=32, conv_kernel_size=5, subsampling_channels=4,
                      chunk_size=2, left_context=3, output_dim=8),
    "contextnet": dict(channels=16, num_blocks=4, layers_per_block=2, output_dim=8),
    # gates start (mostly) on; tests/test_amortized.py checks streaming, look-ahead and padding with mixed gates
    "amortized_transformer": dict(dim=16, num_layers=2, num_heads=2, ffn_dim=32, subsampling_channels=4,
                                  chunk_size=2, left_context=3, output_dim=8, arbitrator_dim=8, cost_weight=0.5),
}
NAMES = list(SMALL_CONFIGS)
PAPER_ENCODERS = ["conv_rnnt", "conformer", "contextnet"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small_encoder(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = dict(SMALL_CONFIGS[name])
    return build_encoder(NUM_FEATURES, {"name": cfg.pop("encoder", name), **cfg}).eval()


def stream(encoder, x: torch.Tensor, chunk_lengths: List[int]) -> torch.Tensor:
    """Feed x chunk by chunk, cycling through chunk_lengths (input frames), and concatenate the outputs."""
    state = encoder.init_state(x.size(0), x.device)
    outputs, start, i = [], 0, 0
    while start < x.size(1):
        length = chunk_lengths[i % len(chunk_lengths)]
        y, state = encoder.streaming_forward(x[:, start:start + length], state)
        outputs.append(y)
        start += length
        i += 1
    return torch.cat(outputs, dim=1)


def test_registered():
    assert {c.get("encoder", n) for n, c in SMALL_CONFIGS.items()} <= set(available_encoders())


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_and_lengths(name):
    encoder = small_encoder(name)
    x = torch.randn(2, 203, NUM_FEATURES)
    y, y_lens = encoder(x, torch.tensor([203, 150]))
    assert y.shape == (2, 203 // 4, encoder.output_dim)
    assert y_lens.tolist() == [50, 37]
    assert encoder.subsampling_factor == 4
    assert encoder.chunk_multiple % encoder.subsampling_factor == 0


@pytest.mark.parametrize("name", NAMES)
@torch.no_grad()
def test_look_ahead_is_exact(name):
    """Changing input frames after t + look_ahead leaves every output frame covering frames <= t unchanged
    (output i covers input frames [4i, 4i+3]); and look_ahead is not overstated: at the first frame of a
    chunk, changing frame t + look_ahead does move the output covering t."""
    encoder = small_encoder(name)
    g = torch.Generator().manual_seed(1)
    t_total = 96
    x = torch.randn(1, t_total, NUM_FEATURES, generator=g)
    lens = torch.tensor([t_total])
    y, _ = encoder(x, lens)
    look_ahead, factor = encoder.look_ahead, encoder.subsampling_factor
    for t in [0, 3, 5, 17, 30, 41, 56, 63]:
        if t + look_ahead + 1 >= t_total:
            continue
        x_changed = x.clone()
        x_changed[:, t + look_ahead + 1:] = 10 * torch.randn(1, t_total - t - look_ahead - 1, NUM_FEATURES,
                                                              generator=g)
        y_changed, _ = encoder(x_changed, lens)
        covering = t // factor + 1  # outputs 0 .. t//4 cover frames <= t (so do those ending at <= t)
        torch.testing.assert_close(y_changed[:, :covering], y[:, :covering], atol=1e-5, rtol=0,
                                   msg=f"t={t}: output moved by frames after t + look_ahead")
        assert not torch.allclose(y_changed[:, covering:], y[:, covering:], atol=1e-5), \
            f"t={t}: later outputs did not move at all: the test input change had no effect"
    for t in [0, encoder.chunk_multiple, 3 * encoder.chunk_multiple]:
        x_changed = x.clone()
        x_changed[:, t + look_ahead] += 10.0
        y_changed, _ = encoder(x_changed, lens)
        i = t // factor
        assert (y_changed[:, i] - y[:, i]).abs().max() > 1e-4, \
            f"t={t}: frame t + look_ahead does not affect output {i}: look_ahead {look_ahead} is overstated"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk_pattern", [[1], [3], [1, 2, 3]])
@torch.no_grad()
def test_streaming_matches_forward_small(name, chunk_pattern):
    encoder = small_encoder(name)
    m = encoder.chunk_multiple
    t_total = 12 * m  # a multiple of every chunk pattern's cycle (1, 3 and 6 multiples)
    x = torch.randn(2, t_total, NUM_FEATURES, generator=torch.Generator().manual_seed(2))
    y_full, _ = encoder(x, torch.tensor([t_total, t_total]))
    y_stream = stream(encoder, x, [k * m for k in chunk_pattern])
    assert y_stream.shape == y_full.shape
    torch.testing.assert_close(y_stream, y_full, atol=1e-4, rtol=0)


def test_every_registered_encoder_is_tested():
    assert set(available_encoders()) <= {c.get("encoder", n) for n, c in SMALL_CONFIGS.items()}


@pytest.mark.parametrize("name", NAMES)
@torch.no_grad()
def test_stream_ends_on_any_length(name):
    """Every encoder ends a stream the same way: whole chunks through streaming_forward, then the tail that fills
    no chunk (cut to a multiple of the subsampling factor, as forward cuts it) through streaming_forward_final;
    the output is forward's, for lengths that are not multiples of the chunk."""
    encoder = small_encoder(name)
    m, f = encoder.chunk_multiple, encoder.subsampling_factor
    g = torch.Generator().manual_seed(4)
    for t in (3 * m + f + 1, 2 * m + m // 2 + 3, m + f, f + 2, 5 * m - 1):
        x = torch.randn(1, t, NUM_FEATURES, generator=g)
        y_full, _ = encoder(x, torch.tensor([t]))
        usable = t - t % f
        state, outputs, start = encoder.init_state(1, x.device), [], 0
        while start < usable:
            end = min(start + m, usable)
            step = encoder.streaming_forward if end - start == m else encoder.streaming_forward_final
            y, state = step(x[:, start:end], state)
            outputs.append(y)
            start = end
        torch.testing.assert_close(torch.cat(outputs, dim=1), y_full, atol=1e-4, rtol=0, msg=f"{name}, {t} frames")


@pytest.mark.parametrize("name", PAPER_ENCODERS)
@torch.no_grad()
def test_streaming_matches_forward_default_config(name):
    torch.manual_seed(0)
    encoder = build_encoder(NUM_FEATURES, {"name": name}).eval()
    m = encoder.chunk_multiple
    # long enough for the conformer's default 64-frame attention cache to wrap around
    t_total = 320 // m * m
    x = torch.randn(2, t_total, NUM_FEATURES, generator=torch.Generator().manual_seed(3))
    y_full, _ = encoder(x, torch.tensor([t_total, t_total]))
    y_stream = stream(encoder, x, [m, 2 * m])
    torch.testing.assert_close(y_stream, y_full, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NAMES)
@torch.no_grad()
def test_padding_does_not_reach_valid_frames(name):
    """In a padded batch, a short utterance's valid outputs equal those of the utterance encoded alone."""
    encoder = small_encoder(name)
    g = torch.Generator().manual_seed(4)
    t_total, t_short = 96, 53
    x = torch.randn(2, t_total, NUM_FEATURES, generator=g)
    x[1, t_short:] = 100 * torch.randn(t_total - t_short, NUM_FEATURES, generator=g)
    y, y_lens = encoder(x, torch.tensor([t_total, t_short]))
    y_alone, y_alone_lens = encoder(x[1:, :t_short], torch.tensor([t_short]))
    n = int(y_lens[1])
    assert n == int(y_alone_lens[0]) == t_short // 4
    torch.testing.assert_close(y[1, :n], y_alone[0, :n], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_training_step_is_finite_with_padding(name):
    """Train mode (dropout on), padded batch whose padding fills whole attention windows: finite loss/grads."""
    encoder = small_encoder(name).train()
    x = torch.randn(2, 96, NUM_FEATURES)
    y, y_lens = encoder(x, torch.tensor([96, 20]))
    mask = torch.arange(y.size(1))[None, :] < y_lens[:, None]
    loss = (y.pow(2).mean(-1) * mask).sum() / mask.sum()
    loss.backward()
    assert torch.isfinite(loss)
    for p_name, p in encoder.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), p_name


@pytest.mark.parametrize("name", PAPER_ENCODERS)
def test_state_is_batch_first_and_chunks_are_checked(name):
    """Every state tensor has the batch first (streams can be selected/merged on dim 0); bad chunks raise."""
    encoder = small_encoder(name)
    state = encoder.init_state(3, torch.device("cpu"))
    leaves, _ = torch.utils._pytree.tree_flatten(state)
    assert leaves and all(leaf.size(0) == 3 for leaf in leaves)
    with pytest.raises(ValueError):
        encoder.streaming_forward(torch.randn(3, encoder.chunk_multiple + 1, NUM_FEATURES), state)


def test_default_sizes_are_comparable():
    counts = {}
    for name in PAPER_ENCODERS:
        counts[name] = count_parameters(build_encoder(NUM_FEATURES, {"name": name, "output_dim": 256}))
    assert all(4e6 <= c <= 6e6 for c in counts.values()), counts
    assert max(counts.values()) <= 1.1 * min(counts.values()), counts


def test_flops_count_lstm_analytically():
    """FlopCounterMode has no LSTM formula; the hook adds it. Check against a hand count for the LSTM encoder."""
    encoder = build_encoder(NUM_FEATURES, {"name": "lstm", "hidden_dim": 32, "num_layers": 2, "output_dim": 16})
    per_output_frame = 4 * NUM_FEATURES * 32 + 2 * 4 * 32 * (32 + 32) + 32 * 16  # multiply-accumulates
    assert encoder_flops_per_second(encoder) == pytest.approx(2 * 25 * per_output_frame)


@pytest.mark.parametrize("name", PAPER_ENCODERS)
def test_flops_per_second_positive_and_length_independent(name):
    encoder = small_encoder(name)
    one, four = encoder_flops_per_second(encoder, seconds=1.28), encoder_flops_per_second(encoder, seconds=5.12)
    assert one > 0
    assert four == pytest.approx(one, rel=1e-6)


def test_conv_rnnt_branches_reach_the_fusion_normalised():
    """Regression: with unnormalised residual 2-D conv blocks the local branch grew to ~1e5 in training, one
    input-independent direction; after the fusion LayerNorm the LSTM saw the same vector at every frame and the
    model never used the audio. Both branches now end in a LayerNorm, so however large the convolutions' weights
    grow, each reaches the fusion at unit scale and the fused input still varies over time."""
    encoder = small_encoder("conv_rnnt")
    with torch.no_grad():
        for p in encoder.local_encoder.parameters():  # what training did to the old branch, exaggerated
            if p.dim() > 1:
                p.mul_(30.0)
        x = torch.randn(2, 80, NUM_FEATURES) * 4 - 6  # log-mel-like scale
        state = encoder.init_state(2, x.device)
        local, _ = encoder.local_encoder(x, state["local"])
        global_, _ = encoder.global_encoder(x, state["global"])
        fused = encoder.fuse_norm(encoder.fuse(torch.cat([local, global_], dim=-1)))
    for branch in (local, global_):
        rms = branch.pow(2).mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones_like(rms), atol=0.05), rms
    assert fused.std(dim=1).mean() > 0.1  # not one vector repeated at every frame
