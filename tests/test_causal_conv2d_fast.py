"""The 2-D convolutional front end's fast forms compute what the plain nn.Conv2d path computes: the first
convolution as one im2col matrix product (CausalConv2d.forward_single_channel, output channels-last), the second
on channels-last memory, and the projection of a channels-last map (CausalConv2dSubsampling.project): outputs,
carried caches and gradients, from zero and from carried caches."""
from __future__ import annotations

import pytest
import torch

from serac.encoders.streaming import CausalConv2d, CausalConv2dSubsampling, _Im2colWeightGrad


@pytest.mark.parametrize("kernel,stride,freq", [((3, 3), (2, 2), 23), ((3, 3), (2, 2), 80), ((3, 3), (1, 1), 9),
                                                ((3, 5), (2, 1), 12)])
def test_single_channel_equals_conv2d(kernel, stride, freq):
    torch.manual_seed(0)
    conv = CausalConv2d(1, 6, kernel, stride)
    x = torch.randn(2, 8, freq)
    cache = torch.randn(2, 1, conv.cache_frames, freq)
    ref, ref_cache = conv(x.unsqueeze(1), cache)
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), list(conv.parameters()))
    out, out_cache = conv.forward_single_channel(x, cache)
    grads = torch.autograd.grad(out.pow(2).sum(), list(conv.parameters()))
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_cache, ref_cache)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    # with the ReLU applied in place
    ref = torch.relu(conv(x.unsqueeze(1), cache)[0])
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), list(conv.parameters()))
    out, _ = conv.forward_single_channel(x, cache, relu=True)
    grads = torch.autograd.grad(out.pow(2).sum(), list(conv.parameters()))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def _plain_subsampling(sub: CausalConv2dSubsampling, x: torch.Tensor, state):
    """The front end as nn.Conv2d computes it on contiguous (N, C, T, F) maps (the code before the fast forms)."""
    h, c1 = sub.conv1(x.unsqueeze(1), state["conv1"])
    h, c2 = sub.conv2(torch.relu(h).contiguous(), state["conv2"])
    h = torch.relu(h).contiguous()
    n, c, t, f = h.shape
    return sub.proj(h.permute(0, 2, 1, 3).reshape(n, t, c * f)), {"conv1": c1, "conv2": c2}


@pytest.mark.parametrize("carried", [False, True])
@pytest.mark.parametrize("fast_path_min_frames", [0, 10 ** 9])
def test_subsampling_equals_plain_conv2d(carried, fast_path_min_frames):
    torch.manual_seed(0)
    sub = CausalConv2dSubsampling(23, 8, 12)
    sub.fast_path_min_frames = fast_path_min_frames  # 0: the im2col / channels-last path even on this short input
    x = torch.randn(3, 16, 23, requires_grad=True)
    state = sub.init_state(3, "cpu")
    if carried:
        state = {k: torch.randn_like(v) for k, v in state.items()}
    ref, ref_state = _plain_subsampling(sub, x, state)
    params = [x] + list(sub.parameters())
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), params)
    out, out_state = sub(x, state)
    grads = torch.autograd.grad(out.pow(2).sum(), params)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for k in ref_state:
        torch.testing.assert_close(out_state[k], ref_state[k])
        assert out_state[k].is_contiguous()
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride,t,channels_last", [((2, 2), 8, False), ((2, 2), 8, True), ((2, 2), 7, False),
                                                    ((1, 1), 6, True), ((2, 1), 3, False)])
def test_zero_cache_as_padding_equals_concatenated_cache(stride, t, channels_last):
    """A zero cache (a stream's start) is supplied as symmetric zero padding where the output count allows it:
    outputs, new cache and gradients as when the zeros are concatenated in front."""
    torch.manual_seed(0)
    conv = CausalConv2d(4, 5, (3, 3), stride)
    x = torch.randn(2, 4, t, 9, requires_grad=True)
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    cache = conv.init_cache(2, 9, "cpu")
    padded = torch.cat([cache, x], dim=2)
    ref, ref_cache = conv.conv(padded), padded[:, :, padded.size(2) - conv.cache_frames:]
    params = [x] + list(conv.parameters())
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), params)
    out, out_cache = conv(xin, cache)
    grads = torch.autograd.grad(out.pow(2).sum(), params)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_cache, ref_cache)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding,t,freq", [((3, 3), (2, 2), (1, 1), 9, 11),
                                                          ((3, 3), (1, 1), (0, 1), 6, 7),
                                                          ((3, 2), (2, 1), (1, 0), 5, 6),
                                                          ((3, 3), (2, 2), (1, 1), 1, 4)])
def test_im2col_weight_grad_equals_conv2d(kernel, stride, padding, t, freq):
    """The channels-last convolution whose weight gradient is one matrix product with the tap matrix: output and
    all three gradients as autograd's conv2d (padding rims, strides, a single output row)."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, t, freq).contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(7, 5, *kernel, requires_grad=True)
    bias = torch.randn(7, requires_grad=True)
    ref = torch.nn.functional.conv2d(x, weight, bias, stride, padding)
    out = _Im2colWeightGrad.apply(x, weight, bias, stride, padding)
    grad = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, weight, bias), grad)
    grads = torch.autograd.grad(out, (x, weight, bias), grad)
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    assert grads[1].is_contiguous()


def test_second_convolution_weight_grad_path(monkeypatch):
    """In training the channels-last second convolution takes _Im2colWeightGrad unless fast_weight_grad is off (the
    LSTM encoder's front end: autograd's conv2d, its float rounding bit for bit) or SERAC_CPU_OPS=aten."""
    torch.manual_seed(0)
    conv = CausalConv2d(4, 6, (3, 3), (2, 2))
    x = torch.randn(2, 4, 8, 9).contiguous(memory_format=torch.channels_last)
    calls = []
    original = _Im2colWeightGrad.apply
    monkeypatch.setattr(_Im2colWeightGrad, "apply", lambda *a: calls.append(1) or original(*a))
    fast, _ = conv(x)
    assert calls == [1]
    plain, _ = conv(x, fast_weight_grad=False)
    ref = torch.nn.functional.conv2d(x, conv.conv.weight, conv.conv.bias, (2, 2), (1, 1))
    assert calls == [1] and torch.equal(plain, ref)
    assert torch.equal(torch.autograd.grad(plain.sum(), conv.conv.weight)[0],
                       torch.autograd.grad(ref.sum(), conv.conv.weight)[0])
    monkeypatch.setenv("SERAC_CPU_OPS", "aten")
    conv(x)
    with torch.no_grad():
        conv(x)
    assert calls == [1]
