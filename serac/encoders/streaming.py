"""Exactly streamable building blocks shared by the conv_rnnt, conformer and contextnet encoders.

Every block here has one code path for training and streaming: ``forward(x, state)`` consumes a span
of frames given the state carried from the frames before it and returns the new state. Full-utterance
encoding is the same call from the initial state (zero convolution caches are exactly the zero padding
of a causal convolution, an empty running sum is the start of a running mean, an attention cache whose
slots are all marked invalid is exactly "no left context"), so chunk-by-chunk streaming reproduces the
full-utterance output up to float rounding, with no approximation anywhere.

The blocks:

* :class:`CausalConv1d` / :class:`CausalConv2d`: convolutions padded only on the past side in time; the
  carried cache is the last ``dilation*(kernel-1) + 1 - stride`` input frames (``kernel-1`` when
  ``stride=1``). With a time stride ``s`` output ``j`` covers input frames ``[j*s, j*s+s-1]`` plus the
  past, the same alignment as frame stacking, so a stride adds no look-ahead beyond its own group.
* :class:`RunningMeanSqueezeExcitation`: squeeze-and-excitation whose pooled summary at frame ``t`` is
  the mean of frames ``<= t`` (cumulative sum / count), carried as a running sum and count.
* :class:`ChunkedSelfAttention`: each frame attends to its own chunk of ``chunk_size`` frames and the
  ``left_context`` frames before the chunk, with a learned relative-position bias inside that window;
  the carried cache is the last ``left_context`` keys and values and their validity.

Normalisation is LayerNorm (per frame) everywhere: BatchNorm's training statistics would mix padded
frames and future frames into every frame.

Carried states are nested dicts/lists of tensors whose first dimension is the batch, so streams can be
selected or merged with ``index_select`` / ``torch.cat`` on dim 0.

Parameter and FLOP counting for comparing encoders live in :mod:`serac.encoders.cost`.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from serac.encoders import cpu_ops, kernels
from serac.encoders.cpu_ops import Dropout, Linear, linear
from serac.encoders.cpu_ops import tracing as _tracing

State = Dict[str, torch.Tensor]


def _keep_last(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """The last ``n`` entries along ``dim`` (``n`` may be 0)."""
    return x.narrow(dim, x.size(dim) - n, n)


class CausalConv1d(nn.Module):
    """1-D convolution over (N, C, T), padded only on the past side.

    Output ``j`` sees input frames ``<= j*stride + stride - 1``. The cache holds the last
    ``dilation*(kernel_size-1) + 1 - stride`` input frames; streamed chunks must be multiples of ``stride``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        span = dilation * (kernel_size - 1) + 1
        if span < stride:
            raise ValueError(f"kernel span {span} shorter than stride {stride} would skip input frames")
        self.in_channels = in_channels
        self.stride = stride
        self.cache_frames = span - stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                              groups=groups, bias=bias)

    def init_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(batch_size, self.in_channels, self.cache_frames, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, cache: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if cache is None:
            cache = self.init_cache(x.size(0), x.device, x.dtype)
        x = torch.cat([cache, x], dim=2)
        return self.conv(x), _keep_last(x, self.cache_frames, 2)

    onednn_min_frames = 256  # (batch x padded frames) from which a depthwise convolution runs in oneDNN

    def forward_time_major(self, x: torch.Tensor, cache: Optional[torch.Tensor] = None
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The same convolution on (N, T, C) input, output (N, T', C); the cache keeps the (N, C, frames) layout.

        A depthwise convolution (``groups == channels``) in training runs in C where the kernels are built
        (:func:`serac.encoders.kernels.depthwise_conv`: forward and backward, the cache and the input read where they
        lie, no concatenation; one thread, fwd + bwd of (8, 100, 256) with kernel 5: 0.30 against 0.42 ms for the
        concatenation, oneDNN's forward and input gradient and the weight-gradient kernel; ``bench/bench_kernels.py``).
        Otherwise (decoding, where it is no faster; or without the kernels) it runs in oneDNN's channels-last layout,
        of which (N, T, C) is a view (no transposes; one thread, fwd + bwd of (8, 100, 144) with kernel 15: 0.85 ms,
        against 2.44 ms for the shifted multiply-adds and several times that for oneDNN's 1-D (N, C, T) convolution
        with the transposes around it). Short spans (a streamed chunk: under ``onednn_min_frames`` batch x frames),
        exporters, FLOP counting and ``SERAC_CPU_OPS=aten`` compute it as ``kernel_size`` shifted multiply-adds in
        the time-major layout. A full convolution whose kernel is its stride
        (frame stacking, no cache) is one matmul of the stacked frames; other convolutions transpose and call
        ``forward``."""
        conv = self.conv
        channels = conv.in_channels
        if conv.groups == 1 and conv.kernel_size[0] == self.stride and conv.dilation[0] == 1:
            return self._frame_stacking(x, cache)
        if not (conv.groups == channels == conv.out_channels):
            y, cache = self.forward(x.transpose(1, 2), cache)
            return y.transpose(1, 2), cache
        if cache is None:
            cache = self.init_cache(x.size(0), x.device, x.dtype)
        stride, dilation, kernel = self.stride, conv.dilation[0], conv.kernel_size[0]
        if not cpu_ops.compiling() and _needs_autograd(x, conv.weight, conv.bias) and cpu_ops.active():
            # training: forward and backward in C, the cache read where it lies (serac.encoders.kernels)
            y = kernels.depthwise_conv(x, cache, conv.weight, conv.bias, stride, dilation)
            if y is not None:
                return y, self._next_cache(x, cache)
        padded = torch.cat([cache.transpose(1, 2), x], dim=1)  # (N, cache + T, C)
        # taps at stride 1, then every stride-th frame: slice bounds stay simple expressions of the input length,
        # which the ONNX exporters can trace with a dynamic time axis
        t_full = padded.size(1) - dilation * (kernel - 1)
        if (not cpu_ops.compiling() and padded.size(0) * padded.size(1) >= self.onednn_min_frames
                and padded.device.type == "cpu" and cpu_ops.onednn_available() and cpu_ops.active()):
            # oneDNN's depthwise convolution in its channels-last (NHWC) layout, of which (N, T, C) is a view:
            # (N, C, 1, T) without a copy, and the output comes back as (N, T', C) contiguous
            if _needs_autograd(padded, conv.weight, conv.bias):
                y = _DepthwiseOneDnn.apply(padded, conv.weight, conv.bias, dilation, stride, t_full)
            else:
                y = _depthwise_onednn(padded, conv.weight, conv.bias, dilation, stride)
            return y, _keep_last(padded, self.cache_frames, 1).transpose(1, 2)
        weight = conv.weight.view(channels, kernel)
        if _needs_autograd(padded, weight) and not _tracing():
            # training: the same sums, with a hand-written backward (one gradient buffer, no per-tap zero fill)
            y = _DepthwiseTaps.apply(padded, weight, conv.bias, dilation, stride, t_full)
        else:
            y = _depthwise_taps(padded, weight, conv.bias, dilation, 1, t_full)
            if stride > 1:
                y = y[:, ::stride]
        return y, _keep_last(padded, self.cache_frames, 1).transpose(1, 2)

    def _next_cache(self, x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """The last ``cache_frames`` frames of ``cache`` (N, C, frames) followed by ``x`` (N, T, C), as (N, C,
        cache_frames)."""
        if x.size(1) >= self.cache_frames:
            return _keep_last(x, self.cache_frames, 1).transpose(1, 2)
        return _keep_last(torch.cat([cache, x.transpose(1, 2)], dim=2), self.cache_frames, 2)

    def _frame_stacking(self, x: torch.Tensor, cache: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """A full convolution whose kernel is its stride (no cache) on (N, T, C): every output is the linear map
        of one group of ``stride`` stacked frames, one matmul without transposes."""
        n, t, c = x.shape
        stride, weight = self.stride, self.conv.weight  # (out, in, stride)
        weight = weight.transpose(1, 2).reshape(weight.size(0), stride * c)  # frame-major, as the stacked rows
        y = linear(x[:, : t // stride * stride].reshape(n, t // stride, stride * c), weight, self.conv.bias)
        if cache is None:
            cache = self.init_cache(n, x.device, x.dtype)
        return y, cache


def _needs_autograd(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _tap(padded: torch.Tensor, k: int, dilation: int, stride: int, t_full: int) -> torch.Tensor:
    """Input frames of tap ``k`` for every output: ``padded[:, k*dilation : k*dilation + t_full : stride]``."""
    x = padded.narrow(1, k * dilation, t_full)
    return x if stride == 1 else x[:, ::stride]


def _depthwise_taps(padded: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int,
                    stride: int, t_full: int) -> torch.Tensor:
    """Depthwise causal convolution on time-major (N, T, C) input, ``weight`` (C, kernel): ``bias + sum_k
    tap_k * weight[:, k]`` (taps in order k = 0, 1, ...), one ``addcmul`` pass per tap."""
    first = _tap(padded, 0, dilation, stride, t_full)
    y = first * weight[:, 0] if bias is None else torch.addcmul(bias, first, weight[:, 0])
    for k in range(1, weight.size(1)):
        y = torch.addcmul(y, _tap(padded, k, dilation, stride, t_full), weight[:, k])
    return y


class _DepthwiseTaps(torch.autograd.Function):
    """:func:`_depthwise_taps` with the output stride applied to the taps, and a backward that accumulates the
    input gradient of every tap into one buffer (autograd's own backward of the sliced taps zero-fills a padded
    buffer per tap and adds them up) and reduces each tap's weight gradient directly."""

    @staticmethod
    def forward(ctx, padded, weight, bias, dilation, stride, t_full):  # type: ignore[override]
        first = _tap(padded, 0, dilation, stride, t_full)
        y = first * weight[:, 0] if bias is None else torch.addcmul(bias, first, weight[:, 0])
        for k in range(1, weight.size(1)):
            y.addcmul_(_tap(padded, k, dilation, stride, t_full), weight[:, k])
        _save_depthwise(ctx, padded, weight, bias, (dilation, stride, t_full))
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        padded, weight = ctx.saved_tensors
        kernel = weight.size(1)
        grad_padded = None
        if ctx.needs_input_grad[0]:
            dilation, stride, t_full = ctx.args
            grad_padded = torch.empty_like(padded)
            if stride == 1:  # the last tap covers exactly the frames after the cache: written, not accumulated
                cache = padded.size(1) - t_full
                grad_padded.narrow(1, 0, cache).zero_()
                torch.mul(grad, weight[:, kernel - 1], out=grad_padded.narrow(1, cache, t_full))
                kernel -= 1
            else:
                grad_padded.zero_()
            for k in range(kernel):
                _tap(grad_padded, k, *ctx.args).addcmul_(grad, weight[:, k])
        grad_weight, grad_bias = _depthwise_parameter_grads(ctx, grad, padded, weight.size(1))
        return grad_padded, grad_weight, grad_bias, None, None, None


def _save_depthwise(ctx, padded: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                    args: Tuple[int, int, int]) -> None:
    ctx.save_for_backward(padded, weight)
    ctx.args = args  # (dilation, stride, t_full)
    ctx.has_bias = bias is not None


def _depthwise_parameter_grads(ctx, grad: torch.Tensor, padded: torch.Tensor, kernel: int
                               ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The weight gradient (C, kernel) and the bias gradient, where needed: all taps in one pass of the C kernel
    where it is built (:func:`serac.encoders.kernels.depthwise_weight_grad`), otherwise each tap's reduced
    directly."""
    grad_weight = grad_bias = None
    if ctx.needs_input_grad[1]:
        dilation, stride, _ = ctx.args
        grads = kernels.depthwise_weight_grad(grad, padded, kernel, stride, dilation,
                                              ctx.has_bias and ctx.needs_input_grad[2])
        if grads is not None:
            return grads
        grad_weight = _depthwise_weight_grad_per_tap(grad, padded, kernel, *ctx.args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 1))
    return grad_weight, grad_bias


def _depthwise_weight_grad_per_tap(grad: torch.Tensor, padded: torch.Tensor, kernel: int, dilation: int,
                                   stride: int, t_full: int) -> torch.Tensor:
    """The (C, kernel) weight gradient in ATen: a multiply and a reduction per tap."""
    return torch.stack([(grad * _tap(padded, k, dilation, stride, t_full)).sum((0, 1)) for k in range(kernel)], 1)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """(N, T, C) -> the (N, C, 1, T) view that is channels-last in memory (no copy)."""
    return x.permute(0, 2, 1).unsqueeze(2)


def _depthwise_onednn(padded: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int,
                      stride: int) -> torch.Tensor:
    """Depthwise causal convolution of time-major (N, T, C) ``padded`` by oneDNN in its channels-last layout;
    ``weight`` is the (C, 1, kernel) ``Conv1d`` weight. Output (N, T', C)."""
    y = nn.functional.conv2d(_nhwc(padded), weight.unsqueeze(2), bias, (1, stride), 0, (1, dilation),
                             weight.size(0))
    return y.squeeze(2).transpose(1, 2)


def _depthwise_input_grad_onednn(grad: torch.Tensor, padded: torch.Tensor, weight: torch.Tensor, dilation: int,
                                 stride: int) -> torch.Tensor:
    """The (N, T_pad, C) input gradient of :func:`_depthwise_onednn` by oneDNN (``weight``: (C, 1, kernel))."""
    return torch.ops.aten.convolution_backward(
        _nhwc(grad), _nhwc(padded), weight.unsqueeze(2), None, (1, stride), (0, 0), (1, dilation), False, (0, 0),
        weight.size(0), (True, False, False))[0].squeeze(2).transpose(1, 2)


class _DepthwiseOneDnn(torch.autograd.Function):
    """:func:`_depthwise_onednn` for training: the forward and the input gradient in oneDNN (one thread, (8, 104,
    256), kernel 5: 0.05 and 0.06 ms), a dilated convolution's input gradient by the C kernel where it is built;
    the weight and bias gradients by :func:`_depthwise_parameter_grads` (oneDNN's took 0.40 and 0.97 ms)."""

    @staticmethod
    def forward(ctx, padded, weight, bias, dilation, stride, t_full):  # type: ignore[override]
        y = _depthwise_onednn(padded, weight, None, dilation, stride)
        if bias is not None:
            y = y.add_(bias)
        _save_depthwise(ctx, padded, weight, bias, (dilation, stride, t_full))
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        padded, weight = ctx.saved_tensors
        dilation, stride, _ = ctx.args
        grad = grad.contiguous()
        grad_padded = None
        if ctx.needs_input_grad[0] and dilation > 1:
            # oneDNN's dilated depthwise backward is ~80x slower than the C kernel (bench/bench_kernels.py); without
            # a dilation it is as fast or faster, and stays
            grad_padded = kernels.depthwise_input_grad(grad, weight, padded.size(1), stride, dilation)
        if ctx.needs_input_grad[0] and grad_padded is None:
            grad_padded = _depthwise_input_grad_onednn(grad, padded, weight, dilation, stride)
        grad_weight, grad_bias = _depthwise_parameter_grads(ctx, grad, padded, weight.size(2))
        if grad_weight is not None:
            grad_weight = grad_weight.unsqueeze(1)  # the (C, 1, kernel) Conv1d weight's shape
        return grad_padded, grad_weight, grad_bias, None, None, None


class CausalConv2d(nn.Module):
    """2-D convolution over (N, C, T, F): causal in time as :class:`CausalConv1d`, centred ("same" padding
    before striding) in frequency. The cache holds the last ``kernel_t - stride_t`` input frames."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Tuple[int, int] = (3, 3),
                 stride: Tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        kernel_t, kernel_f = kernel_size
        stride_t, _ = stride
        if kernel_t < stride_t:
            raise ValueError(f"time kernel {kernel_t} shorter than time stride {stride_t}")
        self.in_channels = in_channels
        self.stride_t = stride_t
        self.cache_frames = kernel_t - stride_t
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(0, (kernel_f - 1) // 2))

    def output_freq(self, freq: int) -> int:
        k, s, p = self.conv.kernel_size[1], self.conv.stride[1], self.conv.padding[1]
        return (freq + 2 * p - k) // s + 1

    def init_cache(self, batch_size: int, freq: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(batch_size, self.in_channels, self.cache_frames, freq, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, cache: Optional[torch.Tensor] = None, fast_weight_grad: bool = True
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, C, T, F) -> (N, C', T', F'); a channels-last input (as :meth:`forward_single_channel` returns)
        stays channels-last, which oneDNN runs faster, forward and backward; the cache is returned contiguous.
        ``fast_weight_grad``: in training, a channels-last input's weight gradient by :class:`_Im2colWeightGrad`
        (unless ``SERAC_CPU_OPS=aten``); False keeps oneDNN's own (other float rounding)."""
        if cache is None:
            cache = self.init_cache(x.size(0), x.size(3), x.device, x.dtype)
        if _is_channels_last(x):
            cache = cache.contiguous(memory_format=torch.channels_last)
        frames = self.cache_frames
        if frames and self._zero_padding_is_causal(x.size(2)) and not _tracing() and not bool(cache.any()):
            # a zero cache (a stream's start: every full-utterance forward) is the zero padding that a symmetric
            # time padding of `frames` frames supplies, and at this length the padding after the last frame
            # reaches no output: the same outputs without copying the input behind the cache
            y = self._conv2d(x, (frames, self.conv.padding[1]), fast_weight_grad)
            tail = torch.cat([cache, _keep_last(x, min(frames, x.size(2)), 2)], dim=2)
            return y, _keep_last(tail, frames, 2).contiguous()
        x = torch.cat([cache, x], dim=2)
        return self._conv2d(x, self.conv.padding, fast_weight_grad), _keep_last(x, frames, 2).contiguous()

    def _conv2d(self, x: torch.Tensor, padding: Tuple[int, int], fast_weight_grad: bool) -> torch.Tensor:
        conv = self.conv
        if (fast_weight_grad and not cpu_ops.compiling() and _is_channels_last(x) and x.dtype == torch.float32
                and x.device.type == "cpu" and _needs_autograd(conv.weight) and cpu_ops.active()
                and cpu_ops.onednn_available()):
            return _Im2colWeightGrad.apply(x, conv.weight, conv.bias, conv.stride, tuple(padding))
        return nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, tuple(padding))

    def _zero_padding_is_causal(self, t: int) -> bool:
        """Whether ``t`` input frames padded by ``cache_frames`` on both sides give the causal output count."""
        kernel_t, frames = self.conv.kernel_size[0], self.cache_frames
        stride = self.stride_t
        return t + frames >= kernel_t and (t + 2 * frames - kernel_t) // stride == (t + frames - kernel_t) // stride

    def forward_single_channel(self, x: torch.Tensor, cache: Optional[torch.Tensor] = None, relu: bool = False,
                               fast_weight_grad: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """The same convolution for one input channel given as (N, T, F) (the cache keeps its (N, 1, frames, F)
        layout): output (N, C', T', F') in channels-last memory. Computed as one matrix product of the
        ``kernel_t * kernel_f`` taps of every output position with the weight (im2col: with a single input channel
        the tap matrix is small), which writes the output directly in the channels-last layout the next
        convolution runs fastest on. ``fast_weight_grad``: the weight gradient by :class:`_Im2colMatmul` (unless
        ``SERAC_CPU_OPS=aten``); False keeps autograd's own (other float rounding)."""
        conv = self.conv
        if conv.in_channels != 1:
            raise ValueError(f"forward_single_channel needs one input channel, not {conv.in_channels}")
        if cache is None:
            cache = self.init_cache(x.size(0), x.size(2), x.device, x.dtype)
        x = torch.cat([cache[:, 0], x], dim=1)  # (N, cache + T, F)
        (kernel_t, kernel_f), (stride_t, stride_f), pad_f = conv.kernel_size, conv.stride, conv.padding[1]
        n, t_out, f_out = x.size(0), (x.size(1) - kernel_t) // stride_t + 1, self.output_freq(x.size(2))
        # (N * T' * F', kernel_t * kernel_f): taps in the weight's order
        cols = _im2col_nhwc(x.unsqueeze(-1), (kernel_t, kernel_f), (stride_t, stride_f), (0, pad_f), (t_out, f_out))
        weight = conv.weight.view(conv.out_channels, kernel_t * kernel_f)
        if fast_weight_grad and _needs_autograd(weight) and cpu_ops.active():
            y = _Im2colMatmul.apply(cols, weight, conv.bias)
        else:
            y = cols.mm(weight.t()) if conv.bias is None else torch.addmm(conv.bias, cols, weight.t())
        if relu:  # in place: a (large) map less to allocate
            y = y.relu_()
        y = y.view(n, t_out, f_out, conv.out_channels)  # (N, T', F', C')
        return y.permute(0, 3, 1, 2), _keep_last(x, self.cache_frames, 1).unsqueeze(1).contiguous()


class _Im2colMatmul(torch.autograd.Function):
    """``cols @ weight.T + bias`` for the single-channel convolution's tap matrix (rows = output positions, 9
    columns), whose weight gradient MKL computes 4x faster as ``(cols.T @ grad).T`` than autograd's
    ``grad.T @ cols`` (one thread, 62400 x 9 taps, 144 channels: 3.6 vs 15 ms)."""

    @staticmethod
    def forward(ctx, cols, weight, bias):  # type: ignore[override]
        ctx.save_for_backward(cols, weight)
        ctx.has_bias = bias is not None
        return cols.mm(weight.t()) if bias is None else torch.addmm(bias, cols, weight.t())

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        cols, weight = ctx.saved_tensors
        grad_cols = grad.mm(weight) if ctx.needs_input_grad[0] else None
        grad_weight = cols.t().mm(grad).t() if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_cols, grad_weight, grad_bias


class _Im2colWeightGrad(torch.autograd.Function):
    """``conv2d(x, weight, bias, stride, padding)`` of a channels-last ``x``, forward and input gradient in oneDNN
    as autograd's; the weight gradient as one oneDNN matrix product of the output gradient with the tap matrix
    (im2col, formed in the backward from the saved input: rows = output positions, columns = (tap, channel)).
    oneDNN's own weight gradient of the front end's second convolution runs at ~105 GFLOP/s, this one at ~170
    with the tap matrix's copy (one thread, (8, 144, 200, 40) -> (8, 144, 100, 20), 3x3, stride 2: 35 vs 56 ms)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, padding, bias is not None)
        return nn.functional.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, has_bias = ctx.args
        grad = grad.contiguous(memory_format=torch.channels_last)
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]
        grad_x = grad_b = grad_w = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, (1, 1), False,
                                                         (0, 0), 1, (True, False, False))[0]
        rows = grad.permute(0, 2, 3, 1).reshape(-1, grad.size(1))  # (positions, C'): a view of channels-last
        if need_b:
            grad_b = rows.sum(0)
        if need_w:
            x_nhwc = x.permute(0, 2, 3, 1)
            cols = kernels.im2col_nhwc(x_nhwc, weight.shape[2:], stride, padding, grad.shape[2:])
            if cols is None:
                cols = _im2col_nhwc(x_nhwc, weight.shape[2:], stride, padding, grad.shape[2:])
            out_c, in_c, kernel_t, kernel_f = weight.shape
            grad_w = cpu_ops.matmul_t(cpu_ops.transposed(rows), cols.t())  # (C', taps x C)
            grad_w = grad_w.view(out_c, kernel_t, kernel_f, in_c).permute(0, 3, 1, 2).contiguous()
        return grad_x, grad_w, grad_b, None, None


def _im2col_nhwc(x: torch.Tensor, kernel: Tuple[int, int], stride: Tuple[int, int], padding: Tuple[int, int],
                 out: Tuple[int, int]) -> torch.Tensor:
    """The tap matrix of a 2-D convolution of an (N, T, F, C) input (zero padding ``padding`` on both sides):
    (N * T' * F', kernel_t * kernel_f * C), row (n, t, f), column (i, j, c) = ``x[n, t*s_t + i - p_t, f*s_f + j -
    p_f, c]`` (0 outside). Each tap copies the box of outputs whose input lies inside ``x``; only the padding's
    rims are zero-filled."""
    n, t_in, f_in, c = x.shape
    (kernel_t, kernel_f), (stride_t, stride_f), (pad_t, pad_f), (t_out, f_out) = kernel, stride, padding, out
    cols = x.new_empty(n, t_out, f_out, kernel_t, kernel_f, c)

    def box(k: int, s: int, p: int, size_in: int, size_out: int) -> Tuple[int, int]:
        first = max(0, -(-(p - k) // s))  # the first output whose input index o*s + k - p is >= 0
        last = min(size_out, (size_in - 1 + p - k) // s + 1)  # one past the last inside
        return first, max(first, last)

    for i in range(kernel_t):
        t0, t1 = box(i, stride_t, pad_t, t_in, t_out)
        for j in range(kernel_f):
            f0, f1 = box(j, stride_f, pad_f, f_in, f_out)
            tap = cols[:, :, :, i, j]
            if t1 > t0 and f1 > f0:
                src_t, src_f = t0 * stride_t + i - pad_t, f0 * stride_f + j - pad_f
                tap[:, t0:t1, f0:f1] = x[:, src_t:src_t + (t1 - t0 - 1) * stride_t + 1:stride_t,
                                         src_f:src_f + (f1 - f0 - 1) * stride_f + 1:stride_f]
            for lo, hi, dim in ((0, t0, 1), (t1, t_out, 1), (0, f0, 2), (f1, f_out, 2)):
                if hi > lo:
                    tap.narrow(dim, lo, hi - lo).zero_()
    return cols.view(n * t_out * f_out, kernel_t * kernel_f * c)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class CausalConv2dSubsampling(nn.Module):
    """Two causal 3x3 convolutions with stride 2 in time and frequency (time / 4), ReLU, then a linear map
    of the flattened (channels x frequency) map to ``output_dim``: the usual Conformer front end, made
    causal. Output frame ``i`` sees input frames ``<= 4i+3``. State: one cache per convolution.

    ``fast_cpu_ops=False`` keeps the arithmetic of the code before ``serac.encoders.cpu_ops`` (the projection in
    MKL, autograd's weight gradient of the first convolution): the LSTM encoder's front end, whose recipes' results
    (yesno's hypotheses) depend on the exact float rounding. Same parameters and maths either way."""

    def __init__(self, num_features: int, channels: int, output_dim: int, fast_cpu_ops: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.fast_cpu_ops = fast_cpu_ops
        self.conv1 = CausalConv2d(1, channels, (3, 3), (2, 2))
        self.conv2 = CausalConv2d(channels, channels, (3, 3), (2, 2))
        self.mid_freq = self.conv1.output_freq(num_features)
        self.out_freq = self.conv2.output_freq(self.mid_freq)
        self.proj = (Linear if fast_cpu_ops else nn.Linear)(channels * self.out_freq, output_dim)

    def init_state(self, batch_size: int, device: torch.device) -> State:
        return {"conv1": self.conv1.init_cache(batch_size, self.num_features, device),
                "conv2": self.conv2.init_cache(batch_size, self.mid_freq, device)}

    fast_path_min_frames = 256  # input frames (batch x time) from which the im2col / channels-last path is taken

    def feature_maps(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """(N, T, F) -> (N, C, T/4, F') feature maps (channels-last in memory above ``fast_path_min_frames``),
        before the flattening projection."""
        # exporters (a dynamic time axis through strided im2col slices is not exported correctly) and short spans (a
        # streamed chunk: converting the second convolution's weight to channels-last costs more than it saves) take
        # the plain convolutions
        if _tracing() or x.size(0) * x.size(1) < self.fast_path_min_frames:
            h, conv1_cache = self.conv1(x.unsqueeze(1), state["conv1"])
            h = torch.relu(h)
        else:
            h, conv1_cache = self.conv1.forward_single_channel(x, state["conv1"], relu=True,
                                                               fast_weight_grad=self.fast_cpu_ops)
        h, conv2_cache = self.conv2(h, state["conv2"], fast_weight_grad=self.fast_cpu_ops)
        return torch.relu(h), {"conv1": conv1_cache, "conv2": conv2_cache}

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """(N, C, T, F) feature maps -> (N, T, output_dim): ``proj`` of each frame's map flattened channel-major.
        A channels-last map is flattened frequency-major instead (a view, no copy) and met by the projection's
        weight columns in the same order, which is the same sum."""
        n, c, t, f = h.shape
        if not _is_channels_last(h) or n * t < self.proj.out_features:  # (a streamed chunk: reorder the map, not
            return self.proj(h.permute(0, 2, 1, 3).reshape(n, t, c * f))  # the larger weight)
        weight = self.proj.weight
        weight = weight.view(weight.size(0), c, f).transpose(1, 2).reshape(weight.size(0), f * c)
        return (linear if self.fast_cpu_ops else nn.functional.linear)(h.permute(0, 2, 3, 1).reshape(n, t, f * c),
                                                                       weight, self.proj.bias)

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        h, state = self.feature_maps(x, state)
        return self.project(h), state


def cumsum_time(x: torch.Tensor, block: int = 16) -> torch.Tensor:
    """``torch.cumsum(x, dim=1)`` of an (N, T, C) tensor, computed in blocks of ``block`` frames: a triangular
    matmul inside each block plus the running sum of the block totals before it. ATen's cumsum along the time
    axis of (N, T, C) runs element by element (one thread, (8, 100, 256): 0.68 ms, blocked 0.14 ms). Same sums,
    in another order (float rounding). Exporters and short spans take ``torch.cumsum``."""
    n, t, c = x.shape
    if cpu_ops.compiling() or t < 2 * block or not cpu_ops.active():
        return torch.cumsum(x, dim=1)
    blocks = -(-t // block)
    pad = blocks * block - t
    xb = (nn.functional.pad(x, (0, 0, 0, pad)) if pad else x).reshape(n, blocks, block, c)
    triangle = torch.ones(block, block, dtype=x.dtype, device=x.device).tril_()
    inner = torch.matmul(triangle, xb)  # (N, blocks, block, C): sums within each block
    totals = inner[:, :, -1]
    before = torch.cumsum(totals, dim=1) - totals  # each block's preceding blocks
    out = (inner + before.unsqueeze(2)).reshape(n, blocks * block, c)
    return out[:, :t] if pad else out


class RunningMeanSqueezeExcitation(nn.Module):
    """Squeeze-and-excitation over (N, T, C) whose summary at frame ``t`` is the mean of frames ``<= t``.

    ContextNet pools over the whole utterance, which needs the future; the running mean keeps the
    global-context idea and streams exactly with a carried (sum, count).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.squeeze = Linear(channels, max(1, channels // reduction))
        self.excite = Linear(max(1, channels // reduction), channels)

    def init_state(self, batch_size: int, device: torch.device) -> State:
        return {"sum": torch.zeros(batch_size, self.channels, device=device),
                "count": torch.zeros(batch_size, 1, device=device)}

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        # squeeze(running mean) = W (sum0 + cumsum_t x) / count + b = (W sum0 + cumsum_t (W x)) / count + b: the
        # squeeze's linear map commutes with the running sum, so the sum runs over its C / reduction outputs, and
        # the (N, T, C) running sum and mean are never formed (ContextNet's training step: 4-7% faster); the state
        # still carries the running sum of x, whose new value is sum0 + the chunk's sum
        t = x.size(1)
        weight = self.squeeze.weight
        # (the carried sum's projection, once per call, as a multiply-sum: not counted as per-frame FLOPs)
        carried = (state["sum"].unsqueeze(1) * weight).sum(-1)  # (N, C / reduction)
        running = cumsum_time(linear(x, weight)) + carried.unsqueeze(1)
        running_count = state["count"].unsqueeze(1) + torch.arange(1, t + 1, device=x.device,
                                                                   dtype=x.dtype).view(1, t, 1)
        squeezed = running / running_count + self.squeeze.bias
        gate = torch.sigmoid(self.excite(nn.functional.silu(squeezed)))
        new_state = {"sum": state["sum"] + x.sum(1), "count": state["count"] + t}
        return x * gate, new_state


class ChunkedSelfAttention(nn.Module):
    """Multi-head self-attention over (N, T, D) in chunks of ``chunk_size`` frames: a frame attends to every
    frame of its own chunk and to the ``left_context`` frames before the chunk start, never further.

    Positions enter as a learned per-head bias indexed by the query-key distance inside the window, so the
    module streams with nothing but the last ``left_context`` keys/values (and whether each cache slot holds
    a real frame). Chunks are aligned to the stream start; streamed spans must be multiples of ``chunk_size``.
    Cost is linear in T: every chunk scores ``chunk_size x (left_context + chunk_size)`` pairs. Over a whole
    utterance the chunks are computed in blocks of about ``block_frames`` frames (:meth:`_attend_blocks`: fewer,
    larger matmuls; a block's queries also score the other keys of the block's span, masked to exactly zero
    weight); ``block_frames = 0`` computes one window per chunk (what ``encoder_flops_per_second`` counts).
    """

    def __init__(self, dim: int, num_heads: int, chunk_size: int, left_context: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        if chunk_size < 1 or left_context < 0:
            raise ValueError(f"need chunk_size >= 1 and left_context >= 0, got {chunk_size}, {left_context}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.chunk_size, self.left_context = chunk_size, left_context
        self.in_proj = Linear(dim, 3 * dim)
        self.out_proj = Linear(dim, dim)
        self.dropout = Dropout(dropout)
        window = left_context + chunk_size
        # distance (query - key) ranges over [-(chunk_size-1), left_context+chunk_size-1]
        self.relative_bias = nn.Parameter(torch.zeros(num_heads, left_context + 2 * chunk_size - 1))
        query_pos = left_context + torch.arange(chunk_size).view(-1, 1)
        key_pos = torch.arange(window).view(1, -1)
        self.register_buffer("bias_index", query_pos - key_pos + chunk_size - 1, persistent=False)
        self.register_load_state_dict_pre_hook(self._crop_relative_bias)

    @staticmethod
    def _crop_relative_bias(module: "ChunkedSelfAttention", state_dict: Dict[str, torch.Tensor], prefix: str,
                            *_args) -> None:
        # a checkpoint with a longer left context loads into a shorter one (the sliding-window baseline is
        # fine-tuned from the full-context model): the bias table is ordered by distance, keep the nearest ones
        key = prefix + "relative_bias"
        bias = state_dict.get(key)
        if bias is not None and bias.dim() == 2 and bias.size(1) > module.relative_bias.size(1):
            state_dict[key] = bias[:, : module.relative_bias.size(1)]

    def init_state(self, batch_size: int, device: torch.device) -> State:
        return {"key": torch.zeros(batch_size, self.left_context, self.dim, device=device),
                "value": torch.zeros(batch_size, self.left_context, self.dim, device=device),
                "valid": torch.zeros(batch_size, self.left_context, dtype=torch.bool, device=device)}

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """``key_valid`` (N, T) marks real frames; padding is never attended to."""
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        out, new_state = self.attend(q, k, v, key_valid, state)
        return self.out_proj(out), new_state

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor, state: State,
               chunk_index: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, State]:
        """The attention core on projected (N, T, D) queries, keys and values, before ``out_proj``.

        Keys with ``key_valid`` False are never attended to (their values may be anything, e.g. zeros). With
        ``chunk_index`` (flat indices ``n * num_chunks + j`` into the batch's chunks) only those chunks' scores
        are computed and the other chunks' outputs are zeros: the amortized Transformer runs the core only where
        some query is active. The new state is the same either way."""
        n, t, _ = q.shape
        c, left, h, dh = self.chunk_size, self.left_context, self.num_heads, self.head_dim
        keys = torch.cat([state["key"], k], dim=1)
        values = torch.cat([state["value"], v], dim=1)
        valid = torch.cat([state["valid"], key_valid], dim=1)
        new_state = {"key": _keep_last(keys, left, 1), "value": _keep_last(values, left, 1),
                     "valid": _keep_last(valid, left, 1)}
        if chunk_index is None:
            return self._attend_blocks(q, keys, values, valid), new_state

        # pad the last partial chunk (only in full-utterance mode) with invalid frames
        pad = (-t) % c
        if pad:
            q = nn.functional.pad(q, (0, 0, 0, pad))
            keys = nn.functional.pad(keys, (0, 0, 0, pad))
            values = nn.functional.pad(values, (0, 0, 0, pad))
            valid = nn.functional.pad(valid, (0, pad), value=False)
        num_chunks = (t + pad) // c
        window = left + c
        # (1, selected chunks, H, rows, dh), gathered with index_select from head-major copies of the
        # sequences, already in the layout the batched matmuls take (advanced indexing of the unfolded views,
        # then reshaping for matmul, copied every window twice). Windows start at multiples of chunk_size, so
        # when left_context is one too, whole chunk-sized blocks are gathered (c times fewer, longer rows).
        unit = c if left % c == 0 else 1
        length, padded = left + t + pad, t + pad
        batch = torch.div(chunk_index, num_chunks, rounding_mode="floor")
        first = (chunk_index % num_chunks) * c  # first frame of each selected chunk (= its window start)
        heads = torch.arange(h, device=q.device)
        stream = (batch[:, None] * h + heads)[:, :, None]  # (chunks, H, 1): which (utterance, head) row
        key_rows = (stream * (length // unit) + (first // unit)[:, None, None]
                    + torch.arange(window // unit, device=q.device)).reshape(-1)
        query_rows = (stream * (padded // unit) + (first // unit)[:, None, None]
                      + torch.arange(c // unit, device=q.device)).reshape(-1)

        def head_major(x: torch.Tensor) -> torch.Tensor:  # (N, L, D) -> (N*H*L/unit, unit*dh)
            return x.reshape(n, x.size(1), h, dh).transpose(1, 2).reshape(-1, unit * dh)

        key_windows = head_major(keys).index_select(0, key_rows).view(1, -1, h, window, dh)
        value_windows = head_major(values).index_select(0, key_rows).view(1, -1, h, window, dh)
        q = head_major(q).index_select(0, query_rows).view(1, -1, h, c, dh)
        valid_rows = (batch * length + first)[:, None] + torch.arange(window, device=q.device)
        valid_windows = valid.reshape(-1)[valid_rows].unsqueeze(0)  # (1, chunks, window)
        rows, cols = q.shape[:2]
        # the gathered keys are contiguous: (K q^T)^T is about 2x faster on CPU than q K^T with K^T a view
        scores = torch.matmul(key_windows, q.transpose(-1, -2)).transpose(-1, -2).contiguous()
        scores = scores / math.sqrt(dh)
        scores = scores + self.relative_bias[:, self.bias_index]
        # a finite minimum rather than -inf: a chunk with no valid key (padding only) stays finite, and a
        # masked key still gets exactly zero weight next to any valid one
        scores = scores.masked_fill(~valid_windows[:, :, None, None, :], torch.finfo(scores.dtype).min)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(weights, value_windows).transpose(2, 3).reshape(rows, cols, c, self.dim)
        out = out.new_zeros(n * num_chunks, c, self.dim).index_copy_(0, chunk_index, out[0])
        return out.reshape(n, num_chunks * c, self.dim)[:, :t], new_state

    # queries per block of _attend_blocks (rounded to whole chunks, spread evenly over the utterance): on one CPU
    # thread blocks of 16-100 frames ran a 144-dim, 4-head, chunk-4, left-64 layer (8 x 100 frames, fwd+bwd) in
    # ~45% of the per-chunk windows' time, 20-28 frames fastest
    block_frames = 24

    def _attend_blocks(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor
                       ) -> torch.Tensor:
        """Every chunk's attention, computed for blocks of whole chunks at once: the queries of a block of ``Q``
        frames score the ``Q + left_context`` keys their chunks' windows span (one batched matmul per block
        instead of one tiny one per chunk, and the key/value spans overlap ``(Q + left)/Q`` times instead of
        ``window/chunk_size`` times). A key outside a query's own window gets a score of ``-inf`` (exactly zero
        weight); inside it the scores, bias and masking are those of the per-chunk windows, so a chunk with no
        valid key is still uniform over its own window. ``keys``, ``values``, ``valid`` are cache-prefixed."""
        n, t, _ = q.shape
        c, left, h, dh = self.chunk_size, self.left_context, self.num_heads, self.head_dim
        block = c
        if not _tracing():  # exporters trace blocks of one chunk: nothing depends on the (dynamic) length
            if t == 0:
                return q.new_zeros(n, 0, self.dim)
            if self.block_frames > c:
                num_chunks = -(-t // c)
                num_blocks = -(-num_chunks * c // self.block_frames)
                block = c * -(-num_chunks // num_blocks)
        if (not cpu_ops.compiling() and cpu_ops.active()
                and _needs_autograd(q, keys, values, self.relative_bias)):
            # training: the whole core in one C kernel per block (serac.encoders.kernels.chunked_attention: the same
            # sums, the same dropped weights; ~2x faster than the ATen ops below, fwd + bwd)
            out = kernels.chunked_attention(q, keys, values, valid, self._block_bias(block, block + left), h, block,
                                            self.dropout.p if self.dropout.training else 0.0)
            if out is not None:
                return out
        # pad the last partial block with invalid frames (these expressions of t export with a dynamic time axis)
        pad = (-t) % block
        num_blocks = (t + pad) // block
        if pad:
            q = nn.functional.pad(q, (0, 0, 0, pad))
            keys = nn.functional.pad(keys, (0, 0, 0, pad))
            values = nn.functional.pad(values, (0, 0, 0, pad))
            valid = nn.functional.pad(valid, (0, pad), value=False)
        span = block + left
        q = q.reshape(n, num_blocks, block, h, dh).permute(0, 3, 1, 2, 4)  # (N, H, blocks, Q, dh)
        key_spans = _spans(keys.reshape(n, -1, h, dh).transpose(1, 2), span, block)  # (N, H, blocks, span, dh)
        value_spans = _spans(values.reshape(n, -1, h, dh).transpose(1, 2), span, block)
        valid_spans = valid.unfold(1, span, block)  # (N, blocks, span)
        scores = torch.matmul(q, key_spans.transpose(-1, -2)) / math.sqrt(dh)  # (N, H, blocks, Q, span)
        scores = scores.masked_fill(~valid_spans[:, None, :, None, :], torch.finfo(scores.dtype).min)
        # + the relative bias inside each query's window, -inf outside it (finfo.min + bias stays finfo.min, so
        # masked keys inside the window are exactly as in the per-chunk form)
        scores = scores + self._block_bias(block, span)[:, None]
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(weights, value_spans)  # (N, H, blocks, Q, dh)
        return out.permute(0, 2, 3, 1, 4).reshape(n, num_blocks * block, self.dim)[:, :t]

    def _block_bias(self, block: int, span: int) -> torch.Tensor:
        """(H, block, span): the relative bias of query ``r`` and key ``k`` of a block (keys counted from the
        block's first window start), ``-inf`` where ``k`` is outside the query's chunk window."""
        c, left = self.chunk_size, self.left_context
        if block == c:  # one chunk per block: its window exactly (streaming chunks, exporters, the FLOP count)
            return self.relative_bias[:, self.bias_index]
        device = self.relative_bias.device
        r = torch.arange(block, device=device).view(-1, 1)
        k = torch.arange(span, device=device).view(1, -1)
        start = torch.div(r, c, rounding_mode="floor") * c
        inside = (k >= start) & (k < start + left + c)
        index = (left + r - k + c - 1).clamp(0, self.relative_bias.size(1) - 1)
        return self.relative_bias[:, index].masked_fill(~inside, float("-inf"))


def _spans(x: torch.Tensor, span: int, step: int) -> torch.Tensor:
    """(N, H, L, D) -> (N, H, blocks, span, D): windows of ``span`` frames every ``step`` frames along dim 2."""
    if _needs_autograd(x) and not _tracing():
        return _Spans.apply(x, span, step)
    return x.unfold(2, span, step).transpose(-1, -2)


class _Spans(torch.autograd.Function):
    """The overlapping windows of :func:`_spans`, copied; the backward adds each window's gradient into place
    (one add per window: several times faster on CPU than autograd's ``unfold_backward``)."""

    @staticmethod
    def forward(ctx, x, span, step):  # type: ignore[override]
        ctx.shape, ctx.span, ctx.step = x.shape, span, step
        return x.unfold(2, span, step).transpose(-1, -2).contiguous()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        grad_x = grad.new_zeros(ctx.shape)
        for b in range(grad.size(2)):
            grad_x.narrow(2, b * ctx.step, ctx.span).add_(grad[:, :, b])
        return grad_x, None, None


def check_chunk(x: torch.Tensor, chunk_multiple: int, name: str) -> None:
    if x.size(1) % chunk_multiple:
        raise ValueError(f"{name}.streaming_forward needs chunks of a multiple of {chunk_multiple} input frames, "
                         f"got {x.size(1)}")
