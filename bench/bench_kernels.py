#!/usr/bin/env python3
"""The C kernels of ``serac.encoders.kernels`` against the ATen / oneDNN paths they replace, on the encoders' own
shapes, one thread: milliseconds per call (median over rounds of CPU time) and the ratio. Figures, never pass/fail.

* depthwise weight + bias gradient: ATen's multiply and reduction per tap (``SERAC_KERNELS=off``'s path) vs the
  one-pass kernel;
* depthwise input gradient: oneDNN's ``convolution_backward`` in the channels-last layout vs the kernel;
* the whole depthwise convolution of ``CausalConv1d`` (forward + backward, zero cache): the concatenation, oneDNN's
  forward and input gradient and the weight-gradient kernel (the path before ``depthwise_conv``) vs
  ``depthwise_conv``;
* the transposed copy of a linear layer's output gradient (``x.t().contiguous()``) vs the register-block transpose;
  the front end's tap matrix: the per-tap strided copies vs the row-by-row kernel;
* dropout forward + backward: ``F.dropout`` (``bernoulli_``), the ``rand_like`` mask of ``cpu_ops`` and the
  counter-based kernel;
* the chunked attention's core in training (``ChunkedSelfAttention.attend`` of the Conformer's defaults, 8 x 100
  frames, dropout 0.1, forward + backward): the ATen ops of ``_attend_blocks`` vs the fused kernel;
* the encoders' training step (forward + backward, 8 x 4 s, default configs) with the kernels and without
  (``SERAC_KERNELS=off``), alternating step by step in one process: median step time of each and their ratio.

Usage: python bench/bench_kernels.py [--rounds 7] [--threads 1] [--step-rounds 15] [--encoders contextnet ...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from serac.encoders import build_encoder, cpu_ops, kernels, streaming  # noqa: E402
from serac.encoders.streaming import ChunkedSelfAttention  # noqa: E402
from serac.utils import retain_freed_memory  # noqa: E402

# (batch, output frames, channels, kernel, stride): ContextNet's 100-, 200- (strided) and 400-frame layers, the
# Conformer's convolution module, ConvRNN-T's global blocks (dilation 8)
DEPTHWISE = [(8, 100, 256, 5, 1, 1), (8, 200, 256, 5, 2, 1), (8, 400, 256, 5, 1, 1), (8, 100, 144, 15, 1, 1),
             (8, 100, 144, 5, 1, 8)]
DROPOUT = [(8, 100, 576), (8, 100, 256), (8, 100, 144)]


def per_call_ms(fn: Callable[[], object], rounds: int, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeats):
            fn()
        times.append((time.process_time() - start) / repeats * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-rounds", type=int, default=15, help="alternating training steps of each kind")
    parser.add_argument("--encoders", nargs="*", default=["contextnet", "conformer", "conv_rnnt"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as training does
    if not kernels.available():
        sys.exit(f"kernels unavailable: {kernels.unavailable_reason()}")
    print(f"torch {torch.__version__}, threads={args.threads}, median of {args.rounds} rounds, ms per call")
    print(f"{'op':<34}{'shape':<26}{'ATen/oneDNN':>12}{'kernel':>9}{'ratio':>8}")
    for n, t_out, c, k, stride, dilation in DEPTHWISE:
        t_pad = (t_out - 1) * stride + (k - 1) * dilation + 1
        padded, grad = torch.randn(n, t_pad, c), torch.randn(n, t_out, c)
        weight = torch.randn(c, k)
        t_full = (t_out - 1) * stride + 1  # the taps' span at stride 1, as CausalConv1d gives it

        def aten_weight_grad():
            return (streaming._depthwise_weight_grad_per_tap(grad, padded, k, dilation, stride, t_full),
                    grad.sum((0, 1)))

        def onednn_input_grad():
            return streaming._depthwise_input_grad_onednn(grad, padded, weight.unsqueeze(1), dilation, stride)

        shape = f"({n},{t_out},{c}) k{k} s{stride} d{dilation}"
        for name, ref, ker in (
                ("depthwise weight+bias grad", aten_weight_grad,
                 lambda: kernels.depthwise_weight_grad(grad, padded, k, stride, dilation, True)),
                ("depthwise input grad", onednn_input_grad,
                 lambda: kernels.depthwise_input_grad(grad, weight, t_pad, stride, dilation))):
            a, b = per_call_ms(ref, args.rounds), per_call_ms(ker, args.rounds)
            print(f"{name:<34}{shape:<26}{a:>12.3f}{b:>9.3f}{a / b:>7.1f}x")
    for n, t_out, c, k, stride, dilation in DEPTHWISE:
        conv = streaming.CausalConv1d(c, c, k, stride=stride, dilation=dilation, groups=c)
        x = torch.randn(n, t_out * stride, c, requires_grad=True)
        grad = torch.randn(n, t_out, c)
        shape = f"({n},{t_out * stride},{c}) k{k} s{stride} d{dilation}"
        a, b = (per_call_ms(switched("depthwise_conv", use_kernel, lambda: depthwise_fwd_bwd(conv, x, grad)),
                            args.rounds) for use_kernel in (False, True))
        print(f"{'depthwise conv fwd+bwd':<34}{shape:<26}{a:>12.3f}{b:>9.3f}{a / b:>7.1f}x")
    for shape in ((800, 576), (800, 256), (16000, 144)):
        x = torch.randn(*shape)
        a = per_call_ms(lambda: x.t().contiguous(), args.rounds)
        b = per_call_ms(lambda: kernels.transpose(x), args.rounds)
        print(f"{'transpose':<34}{str(shape):<26}{a:>12.3f}{b:>9.3f}{a / b:>7.1f}x")
    x = torch.randn(8, 200, 40, 144)  # the Conformer's second convolution: 3 x 3, stride 2, -> (100, 20)
    a = per_call_ms(lambda: streaming._im2col_nhwc(x, (3, 3), (2, 2), (0, 1), (100, 20)), args.rounds, repeats=3)
    b = per_call_ms(lambda: kernels.im2col_nhwc(x, (3, 3), (2, 2), (0, 1), (100, 20)), args.rounds, repeats=3)
    print(f"{'front-end tap matrix (im2col)':<34}{'(8,200,40,144) 3x3 s2':<26}{a:>12.3f}{b:>9.3f}{a / b:>7.1f}x")
    for shape in DROPOUT:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)

        def fwd_bwd(fn):
            return lambda: torch.autograd.grad(fn(x), x, g)

        bern = per_call_ms(fwd_bwd(lambda v: F.dropout(v, 0.1, True)), args.rounds)
        rand = per_call_ms(fwd_bwd(lambda v: cpu_ops._Dropout.apply(v, 0.1)), args.rounds)
        ker = per_call_ms(fwd_bwd(lambda v: kernels.dropout(v, 0.1)), args.rounds)
        print(f"{'dropout fwd+bwd (bernoulli_)':<34}{str(shape):<26}{bern:>12.3f}{ker:>9.3f}{bern / ker:>7.1f}x")
        print(f"{'dropout fwd+bwd (rand_like mask)':<34}{str(shape):<26}{rand:>12.3f}{ker:>9.3f}{rand / ker:>7.1f}x")
    attention_core(args.rounds)
    if args.encoders:
        print(f"\nencoder training step (fwd+bwd, 8 x 4 s), {args.step_rounds} alternating steps each, median ms")
        print(f"{'encoder':<14}{'without':>10}{'with':>10}{'ratio':>8}")
    for name in args.encoders:
        torch.manual_seed(0)
        encoder = build_encoder(80, {"name": name, "output_dim": 256}).train()
        x, x_lens = torch.randn(8, 400, 80), torch.full((8,), 400)

        def step() -> None:
            encoder.zero_grad(set_to_none=True)
            y, _ = encoder(x, x_lens)
            y.pow(2).mean().backward()

        times = {"off": [], "on": []}
        for i in range(args.step_rounds + 1):
            for switch in ("off", "on"):
                os.environ["SERAC_KERNELS"] = switch  # read at every call
                start = time.process_time()
                step()
                if i:  # the first of each is a warm-up
                    times[switch].append((time.process_time() - start) * 1e3)
        os.environ.pop("SERAC_KERNELS")
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        print(f"{name:<14}{off:>10.1f}{on:>10.1f}{off / on:>7.2f}x")


def switched(name: str, use_kernel: bool, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with ``kernels.<name>`` as it is, or (``use_kernel`` False) refusing (None: the caller's ATen /
    oneDNN path), restored after each call."""
    real = getattr(kernels, name)

    def run():
        setattr(kernels, name, real if use_kernel else (lambda *a: None))
        try:
            return fn()
        finally:
            setattr(kernels, name, real)
    return run


def depthwise_fwd_bwd(conv: streaming.CausalConv1d, x: torch.Tensor, grad: torch.Tensor) -> object:
    y, _ = conv.forward_time_major(x)
    return torch.autograd.grad(y, (x, conv.conv.weight, conv.conv.bias), grad)


def attention_core(rounds: int) -> None:
    """The Conformer's attention (144 dims, 4 heads, chunks of 4, 64 frames of left context) on 8 x 100 frames with
    a zero cache, forward + backward, dropout 0.1: ATen's ops vs the fused kernel."""
    torch.manual_seed(0)
    attn = ChunkedSelfAttention(144, 4, 4, 64, dropout=0.1).train()
    n, t = 8, 100
    q, k, v = (torch.randn(n, t, 144, requires_grad=True) for _ in range(3))
    valid, state, g = torch.ones(n, t, dtype=torch.bool), attn.init_state(n, "cpu"), torch.randn(n, t, 144)
    def fwd_bwd():
        return torch.autograd.grad(attn.attend(q, k, v, valid, state)[0], (q, k, v, attn.relative_bias), g)

    a, b = (per_call_ms(switched("chunked_attention", use_kernel, fwd_bwd), rounds, repeats=5)
            for use_kernel in (False, True))
    print(f"{'chunked attention fwd+bwd':<34}{'(8,100,144) 4 heads':<26}{a:>12.3f}{b:>9.3f}{a / b:>7.1f}x")


if __name__ == "__main__":
    main()
