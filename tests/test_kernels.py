"""serac.encoders.kernels (the C kernels built on first use): the depthwise convolution's weight, bias and input
gradients equal ATen's, the counter-based dropout has dropout's distribution and scale, its backward the forward's
mask, a seeded run repeats and the thread count changes nothing; the fused chunked attention gives the ATen path's
outputs and gradients (and drops the same weights); the encoders train through them to the same gradients as without
them; a failed build leaves the ATen paths with a clear reason."""
import os

import pytest
import torch
import torch.nn.functional as F

from serac.encoders import build_encoder, kernels
from serac.encoders.streaming import CausalConv1d, ChunkedSelfAttention

pytestmark = pytest.mark.skipif(not kernels.available(), reason=f"kernels not built: {kernels.unavailable_reason()}")


def _reference_conv(padded, weight, bias, stride, dilation):
    """(N, T_pad, C) -> (N, T_out, C) by F.conv1d, weight (C, K)."""
    c, k = weight.shape
    y = F.conv1d(padded.transpose(1, 2), weight.unsqueeze(1), bias, stride=stride, dilation=dilation, groups=c)
    return y.transpose(1, 2)


@pytest.mark.parametrize("n,t_pad,c,k,stride,dilation", [
    (2, 23, 7, 5, 1, 1), (3, 40, 64, 5, 2, 1), (2, 57, 144, 15, 1, 1), (1, 70, 130, 3, 1, 4),
    (4, 33, 256, 31, 1, 1), (2, 30, 65, 4, 2, 3), (2, 60, 16, 40, 1, 1)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_depthwise_gradients_match_aten(n, t_pad, c, k, stride, dilation, with_bias):
    torch.manual_seed(0)
    padded = torch.randn(n, t_pad, c, requires_grad=True)
    weight = torch.randn(c, k, requires_grad=True)
    bias = torch.randn(c, requires_grad=True) if with_bias else None
    y = _reference_conv(padded, weight, bias, stride, dilation)
    grad = torch.randn_like(y)
    wanted = [padded, weight] + ([bias] if with_bias else [])
    ref = torch.autograd.grad(y, wanted, grad)
    dw, db = kernels.depthwise_weight_grad(grad, padded.detach(), k, stride, dilation, with_bias)
    gp = kernels.depthwise_input_grad(grad, weight.detach(), t_pad, stride, dilation)
    torch.testing.assert_close(gp, ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dw, ref[1], rtol=1e-5, atol=1e-4)
    if with_bias:
        torch.testing.assert_close(db, ref[2], rtol=1e-5, atol=1e-4)
    else:
        assert db is None
    # a non-contiguous gradient is read as it is meant
    dw2, _ = kernels.depthwise_weight_grad(grad.transpose(0, 1).contiguous().transpose(0, 1), padded.detach(), k,
                                           stride, dilation, False)
    torch.testing.assert_close(dw2, dw)


def test_depthwise_kernels_refuse_what_they_cannot_do():
    grad, padded = torch.randn(2, 10, 8), torch.randn(2, 50, 8)
    assert kernels.depthwise_weight_grad(grad.double(), padded.double(), 5, 1, 1, True) is None
    with pytest.raises(ValueError, match="shorter than 10 outputs"):
        kernels.depthwise_weight_grad(grad, padded[:, :12], 5, 1, 1, True)
    with pytest.raises(ValueError, match="cannot hold"):
        kernels.depthwise_input_grad(grad, torch.randn(8, 5), 12, 1, 1)


def test_dropout_distribution_mask_seed_and_threads():
    x = torch.ones(300, 1000, requires_grad=True)
    torch.manual_seed(5)
    y = kernels.dropout(x, 0.1)
    kept = y != 0
    # each element kept with probability 0.9 (300k draws: 5 sigma is 0.0028), scaled by 1 / 0.9
    assert abs(kept.float().mean().item() - 0.9) < 0.0028
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.9))
    # no visible structure: neighbouring elements, rows and columns are kept independently
    k = kept.float()
    for a, b in ((k[:, 1:], k[:, :-1]), (k[1:], k[:-1])):
        assert abs((a * b).mean().item() - 0.81) < 0.004
    grad = torch.randn(300, 1000)
    y.backward(grad)
    assert torch.equal(x.grad, grad * y.detach())  # the backward draws the same mask again
    torch.manual_seed(5)
    assert torch.equal(kernels.dropout(x, 0.1), y)  # seeded: the same mask
    assert not torch.equal(kernels.dropout(x, 0.1), y)  # the next call: another mask
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        torch.manual_seed(5)
        assert torch.equal(kernels.dropout(x, 0.1), y)
    finally:
        torch.set_num_threads(threads)
    for p in (0.5, 0.9):
        kept = (kernels.dropout(torch.ones(200_000), p) != 0).float().mean().item()
        assert abs(kept - (1 - p)) < 5 * ((p * (1 - p) / 200_000) ** 0.5)


@pytest.mark.parametrize("name,kwargs", [
    ("contextnet", dict(channels=32, num_blocks=4, layers_per_block=2, dropout=0.0)),
    ("conformer", dict(dim=32, num_layers=2, num_heads=2, ffn_dim=64, subsampling_channels=8, dropout=0.0)),
    ("conv_rnnt", dict(local_channels=4, local_dim=16, global_channels=16, global_dilations=(1, 2), lstm_hidden=24,
                       lstm_layers=1, dropout=0.0)),
])
def test_encoders_train_to_the_same_gradients_without_kernels(monkeypatch, name, kwargs):
    torch.manual_seed(0)
    enc = build_encoder(20, {"name": name, "output_dim": 16, **kwargs}).train()
    x, x_lens = torch.randn(8, 160, 20), torch.tensor([160, 150, 140, 130, 120, 110, 100, 96])

    def grads():
        enc.zero_grad()
        y, _ = enc(x, x_lens)
        y.pow(2).mean().backward()
        return [p.grad.clone() for p in enc.parameters()]

    with_kernels = grads()
    monkeypatch.setenv("SERAC_KERNELS", "off")
    assert not kernels.available()
    without = grads()
    for a, b in zip(with_kernels, without):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n,t_in,c,k,stride,dilation", [
    (2, 23, 7, 5, 1, 1), (3, 40, 64, 5, 2, 1), (2, 57, 144, 15, 1, 1), (1, 70, 130, 3, 1, 4), (4, 33, 256, 31, 1, 1),
    (2, 30, 65, 4, 2, 3), (2, 60, 16, 40, 1, 1), (2, 3, 16, 5, 1, 1), (2, 9, 80, 5, 2, 2), (1, 1, 32, 7, 1, 1)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_depthwise_conv_matches_aten_with_a_cache(n, t_in, c, k, stride, dilation, with_bias):
    """The C forward and backward read the cache (N, C, frames) and the input where they lie: the output and the
    input, weight and bias gradients equal F.conv1d's on the concatenation, whatever the channels (whole vectors or
    not), taps (more than one register tile), stride, dilation and an input shorter than the cache."""
    torch.manual_seed(0)
    cf = dilation * (k - 1) + 1 - stride
    x = torch.randn(n, t_in, c, requires_grad=True)
    cache = torch.randn(n, c, cf)
    weight = torch.randn(c, 1, k, requires_grad=True)
    bias = torch.randn(c, requires_grad=True) if with_bias else None
    y = kernels.depthwise_conv(x, cache, weight, bias, stride, dilation)
    ref = F.conv1d(torch.cat([cache, x.transpose(1, 2)], 2), weight, bias, stride=stride, dilation=dilation,
                   groups=c).transpose(1, 2)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(ref)
    wanted = [x, weight] + ([bias] if with_bias else [])
    for a, b in zip(torch.autograd.grad(y, wanted, grad), torch.autograd.grad(ref, wanted, grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_depthwise_conv_refuses_what_it_cannot_do():
    x, weight = torch.randn(2, 3, 8), torch.randn(8, 1, 5)
    assert kernels.depthwise_conv(x.double(), torch.zeros(2, 8, 4).double(), weight.double(), None, 1, 1) is None
    # a cache that needs a gradient keeps the caller's path
    assert kernels.depthwise_conv(x, torch.zeros(2, 8, 4, requires_grad=True), weight, None, 1, 1) is None
    with pytest.raises(ValueError, match="shorter than the kernel's span"):
        kernels.depthwise_conv(x, torch.zeros(2, 8, 1), weight, None, 1, 1)


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_causal_conv_runs_the_depthwise_kernel_in_training(monkeypatch, stride, dilation):
    """CausalConv1d's depthwise convolution runs in C in training (with a carried cache), not in decoding: the
    outputs, the next cache and the gradients equal the SERAC_KERNELS=off paths (oneDNN's, the shifted
    multiply-adds); a cache that needs a gradient gets it through the ATen path."""
    calls = []
    real = kernels.depthwise_conv
    monkeypatch.setattr(kernels, "depthwise_conv", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    conv = CausalConv1d(16, 16, 5, stride=stride, dilation=dilation, groups=16)
    x = torch.randn(4, 100, 16, requires_grad=True)
    cache = torch.randn(4, 16, conv.cache_frames)

    def run():
        x.grad = None
        conv.zero_grad()
        y, new_cache = conv.forward_time_major(x, cache)
        y.pow(2).sum().backward()
        with torch.no_grad():
            decoded, _ = conv.forward_time_major(x, cache)
        return [y, new_cache, decoded, x.grad, conv.conv.weight.grad, conv.conv.bias.grad]

    with_kernel = run()
    assert len(calls) == 1  # training only
    monkeypatch.setenv("SERAC_KERNELS", "off")
    for a, b in zip(with_kernel, run()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    assert len(calls) == 2 and not kernels.available()
    monkeypatch.delenv("SERAC_KERNELS")
    cache.requires_grad_(True)
    y, _ = conv.forward_time_major(x, cache)
    y.sum().backward()
    assert cache.grad is not None and cache.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (16, 16), (17, 33), (40, 77), (800, 144), (0, 4)])
def test_transpose_is_the_transposed_copy(shape):
    """The 16 x 16 register blocks and the rims: every element lands where x.t() has it (a copy, bit for bit)."""
    x = torch.randn(*shape)
    assert torch.equal(kernels.transpose(x), x.t())
    if min(shape) > 1:
        assert kernels.transpose(x.t()) is None  # not contiguous: refused
    assert kernels.transpose(x.double()) is None and kernels.transpose(torch.randn(2, 3, 4)) is None


def test_linear_weight_gradient_through_the_transpose(monkeypatch):
    """The oneDNN linear layer's weight gradient reads the output gradient transposed by the kernel: the same
    gradients as without it."""
    from serac.encoders import cpu_ops

    calls = []
    real = kernels.transpose
    monkeypatch.setattr(kernels, "transpose", lambda x: calls.append(x.shape) or real(x))
    torch.manual_seed(0)
    x, w, b = (torch.randn(100, 40, requires_grad=True), torch.randn(24, 40, requires_grad=True),
               torch.randn(24, requires_grad=True))
    grads = torch.autograd.grad(cpu_ops.linear(x, w, b).pow(2).sum(), [x, w, b])
    assert calls == [(100, 24)] or not cpu_ops.onednn_available()
    ref = torch.autograd.grad(torch.nn.functional.linear(x, w, b).pow(2).sum(), [x, w, b])
    for a, r in zip(grads, ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 9, 7, 5), (3, 3), (2, 2), (0, 1)), ((1, 6, 6, 3), (3, 2), (1, 2), (2, 1)), ((3, 20, 12, 16), (3, 3), (2, 2),
                                                                                     (2, 1))])
def test_im2col_equals_the_strided_copies(shape, kernel, stride, padding):
    """The tap matrix row by row (zeros where a tap falls in the padding) equals the per-tap strided copies of
    streaming._im2col_nhwc, bit for bit; what the kernel cannot take is refused."""
    from serac.encoders import streaming

    x = torch.randn(*shape)
    out = tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip(shape[1:3], kernel, stride, padding))
    assert torch.equal(kernels.im2col_nhwc(x, kernel, stride, padding, out),
                       streaming._im2col_nhwc(x, kernel, stride, padding, out))
    assert kernels.im2col_nhwc(x.transpose(1, 2), kernel, stride, padding, out) is None
    assert kernels.im2col_nhwc(x.double(), kernel, stride, padding, out) is None


def _attention_case(chunk, left, t, block_frames, dim, heads, p, lens):
    """A ChunkedSelfAttention in training with a random relative bias, queries/keys/values and a half-valid cache
    that require gradients."""
    torch.manual_seed(0)
    attn = ChunkedSelfAttention(dim, heads, chunk, left, dropout=p).train()
    attn.block_frames = block_frames
    with torch.no_grad():
        attn.relative_bias.normal_()
    n = len(lens)
    q, k, v = (torch.randn(n, t, dim, requires_grad=True) for _ in range(3))
    valid = torch.arange(t)[None] < torch.tensor(lens)[:, None]
    state = attn.init_state(n, "cpu")
    state["key"] = torch.randn(n, left, dim, requires_grad=True)
    state["value"] = torch.randn(n, left, dim, requires_grad=True)
    state["valid"][0, left // 2:] = True
    return attn, (q, k, v, valid, state), [q, k, v, state["key"], state["value"], attn.relative_bias]


@pytest.mark.parametrize("chunk,left,t,block_frames,dim,heads", [
    (4, 64, 100, 24, 144, 4), (4, 64, 37, 24, 144, 4), (2, 3, 23, 6, 20, 2), (3, 7, 20, 1, 16, 1),
    (4, 8, 5, 24, 48, 3), (1, 0, 9, 4, 8, 2), (4, 16, 64, 100, 40, 2)])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_chunked_attention_kernel_matches_aten(monkeypatch, chunk, left, t, block_frames, dim, heads, p):
    # head sizes 36, 10, 16, 16, 4, 20 (not all multiples of the vector width), cache windows, partial last blocks,
    # a query whose window holds only padding (the third utterance), dropout: the same weights are dropped
    calls = []
    real = kernels.chunked_attention
    monkeypatch.setattr(kernels, "chunked_attention", lambda *a: calls.append(1) or real(*a))
    lens = [t, max(1, t // 2), 0]
    results = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.setattr(kernels, "chunked_attention", lambda *a: None)
        attn, (q, k, v, valid, state), params = _attention_case(chunk, left, t, block_frames, dim, heads, p, lens)
        torch.manual_seed(1)
        out, _ = attn.attend(q, k, v, valid, state)
        weight = torch.randn(out.shape) * valid[..., None]
        results.append((out.detach(), torch.autograd.grad((out * weight).sum(), params)))
    assert calls == [1]
    (out, grads), (ref, ref_grads) = results
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_chunked_attention_kernel_only_in_training(monkeypatch):
    calls = []
    real = kernels.chunked_attention
    monkeypatch.setattr(kernels, "chunked_attention", lambda *a: calls.append(1) or real(*a))
    attn, (q, k, v, valid, state), _ = _attention_case(4, 16, 40, 24, 32, 2, 0.1, [40, 30])
    with torch.no_grad():  # decoding and evaluation keep the ATen path (their results do not move)
        attn.attend(q, k, v, valid, state)
    assert calls == []
    attn.attend(q, k, v, valid, state)
    assert calls == [1]
    monkeypatch.setenv("SERAC_KERNELS", "off")
    attn.attend(q, k, v, valid, state)
    assert calls == [1, 1]  # asked, and refused: the ATen path ran
    monkeypatch.delenv("SERAC_KERNELS")
    with pytest.raises(ValueError, match="do not fit"):
        real(q, k, v, valid, attn._block_bias(24, 40), 2, 24, 0.0)  # keys without the 16-frame cache


def test_failed_build_names_the_reason(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="no C compiler"):
        kernels.build(tmp_path, cc="no-such-compiler-serac")
    bad = tmp_path / "cc"
    bad.write_text("#!/bin/sh\necho 'broken compiler' >&2\nexit 3\n")
    bad.chmod(0o755)
    with pytest.raises(RuntimeError, match="broken compiler"):
        kernels.build(tmp_path / "out", cc=str(bad))
    assert not list((tmp_path / "out").glob("*.so"))  # nothing half-written is left
    # a process whose build failed keeps the ATen paths
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_tried", True)
    assert not kernels.available()
    assert kernels.dropout(torch.ones(10), 0.5) is None
    from serac.encoders import cpu_ops
    torch.manual_seed(1)
    y = cpu_ops.dropout(torch.ones(1000), 0.5, True)
    assert set(y.unique().tolist()) == {0.0, 2.0}


def test_build_is_cached_and_atomic(tmp_path):
    first = kernels.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert kernels.build(tmp_path) == first and first.stat().st_mtime_ns == mtime  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left


def test_build_key_names_the_instruction_set():
    """-march=native builds for this processor: the cache key must change with its flags, not only its model name
    (a VM can hide AVX-512 from a processor whose model name is the same)."""
    signature = kernels._cpu_signature()
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo")
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    for key in ("flags", "Features"):
        if f"\n{key}" in cpuinfo or cpuinfo.startswith(key):
            assert key in signature


@pytest.mark.parametrize("subsampling", ["stack", "conv2d"])  # the main recipe's and the yesno recipe's front end
def test_lstm_transducer_never_reaches_the_kernels(monkeypatch, subsampling):
    """The LSTM encoder (the yesno and main recipes), the decoder and the joiner keep ATen's arithmetic: a training
    step of the LSTM transducer calls no kernel (its hypotheses depend on the exact float rounding)."""
    from serac.transducer.model import build_model

    def refuse(*args):
        raise AssertionError("a C kernel was called")

    for name in ("depthwise_conv", "depthwise_weight_grad", "depthwise_input_grad", "dropout", "chunked_attention",
                 "transpose", "im2col_nhwc"):
        monkeypatch.setattr(kernels, name, refuse)
    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "output_dim": 32, "hidden_dim": 32, "num_layers": 2,
                                     "dropout": 0.1, "subsampling": subsampling, "conv_channels": 8},
                         "decoder_dim": 32, "joiner_dim": 32}, 20, 10).train()
    out = model(torch.randn(3, 120, 20), torch.tensor([120, 100, 80]), [[1, 2], [3], [4, 5, 6]])
    (out["pruned_loss"] + out["simple_loss"]).backward()
