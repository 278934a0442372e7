"""CausalConv1d.forward_time_major (the depthwise convolution as shifted multiply-adds on (N, T, C), used by the
ContextNet, ConvRNN-T and Conformer blocks for speed) computes what the nn.Conv1d path computes: outputs, carried
caches and gradients, for strides, dilations, carried caches, a full convolution whose kernel is its stride (frame
stacking: one matmul, ContextNet's residual convolutions) and a non-depthwise fallback; in decoding a long span's
depthwise convolution runs in oneDNN's channels-last layout (serac.encoders.cpu_ops), a short one as the
multiply-adds."""
from __future__ import annotations

import pytest
import torch

from serac.encoders import cpu_ops
from serac.encoders.streaming import CausalConv1d


@pytest.mark.parametrize("frames", [12, 120])  # 3 x 120 frames: above onednn_min_frames
@pytest.mark.parametrize("kernel,stride,dilation,groups", [(5, 1, 1, 8), (5, 2, 1, 8), (5, 1, 4, 8), (2, 2, 1, 1),
                                                           (1, 1, 1, 1), (4, 4, 1, 1), (3, 1, 2, 1)])
def test_time_major_equals_conv1d(kernel, stride, dilation, groups, frames):
    torch.manual_seed(0)
    conv = CausalConv1d(8, 8, kernel, stride=stride, dilation=dilation, groups=groups)
    x = torch.randn(3, frames, 8, requires_grad=True)
    cache = torch.randn(3, 8, conv.cache_frames)
    ref, ref_cache = conv(x.transpose(1, 2), cache)
    ref = ref.transpose(1, 2)
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), [x, conv.conv.weight, conv.conv.bias])
    out, out_cache = conv.forward_time_major(x, cache)
    grads = torch.autograd.grad(out.pow(2).sum(), [x, conv.conv.weight, conv.conv.bias])
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_cache, ref_cache)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_time_major_initial_cache_is_zero_padding():
    conv = CausalConv1d(4, 4, 3, groups=4)
    x = torch.randn(2, 7, 4)
    torch.testing.assert_close(conv.forward_time_major(x)[0], conv(x.transpose(1, 2))[0].transpose(1, 2))


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 3)])
def test_training_path_equals_inference_path(stride, dilation):
    """With gradients (the hand-written backward of _DepthwiseTaps, the stride applied to the taps) and without
    (plain addcmul passes, the stride applied after): the same outputs and caches; gradients also when only the
    weights need them (an encoder's first layer on features)."""
    torch.manual_seed(0)
    conv = CausalConv1d(6, 6, 4, stride=stride, dilation=dilation, groups=6)
    x = torch.randn(2, 10, 6)
    cache = torch.randn(2, 6, conv.cache_frames)
    with torch.no_grad():
        ref, ref_cache = conv.forward_time_major(x, cache)
    out, out_cache = conv.forward_time_major(x, cache)
    assert out.requires_grad
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(out_cache, ref_cache)
    grads = torch.autograd.grad(out.pow(2).sum(), [conv.conv.weight, conv.conv.bias])
    ref_out, _ = conv(x.transpose(1, 2), cache)
    ref_grads = torch.autograd.grad(ref_out.pow(2).sum(), [conv.conv.weight, conv.conv.bias])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("switch", ["fast", "aten"])
def test_long_depthwise_span_runs_in_onednn_unless_switched_off(monkeypatch, switch):
    monkeypatch.setenv("SERAC_CPU_OPS", switch)
    calls = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: calls.append(1) or conv2d(*a, **k))
    conv = CausalConv1d(8, 8, 5, groups=8)
    with torch.no_grad():  # decoding (training runs the C kernel where it is built: tests/test_kernels.py)
        conv.forward_time_major(torch.randn(3, 120, 8))
        conv.forward_time_major(torch.randn(1, 8, 8))  # a streamed chunk: the multiply-adds
    assert len(calls) == (1 if switch == "fast" and cpu_ops.onednn_available() else 0)
