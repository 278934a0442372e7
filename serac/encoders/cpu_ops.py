"""CPU fast paths for the encoders' linear layers and dropout, with the maths of ``nn.Linear`` / ``nn.Dropout``.

:class:`Linear`: ``nn.Linear`` whose fp32 CPU matmuls (forward and both backward products) run in oneDNN instead of
MKL. PyTorch's CPU ``F.linear`` / ``torch.mm`` call MKL's sgemm, and on AMD processors MKL does not take its
AVX-512 kernels. On the 2-core AMD EPYC dev box (2026-11-30, one thread, torch 2.13.0+cpu) ``torch.mm`` ran
110 GFLOP/s on every shape the encoders use (800 x 144 x 576 ... 1024^3), oneDNN's matmul on the same shapes
240 GFLOP/s, and the LSTM, which PyTorch already runs in oneDNN (``mkldnn_rnn_layer``), trained at 168 GFLOP/s,
i.e. faster than MKL's "peak" (``bench/bench_encoders.py`` prints both). On a 2-core Intel Xeon (2026-12-01, same
bench) oneDNN's GEMM peak was 0.91x MKL's (135 vs 149 GFLOP/s), and the encoders trained at the same rate with
their linear layers in either library (A/B, docs/encoders.md, seventh pass), so routing through oneDNN costs
nothing measurable there. The maths are the same (fp32 products,
fp32 accumulation; results differ from MKL's by float rounding, as two BLAS libraries do); parameters and
state-dict keys are ``nn.Linear``'s. The oneDNN path is taken only where it pays and is safe: CPU float32
tensors with at least ``MIN_ROWS`` rows (below that oneDNN's per-call overhead, ~10 us, exceeds the gain: a
streamed chunk of a few frames stays on MKL), oneDNN present, and no exporter, compiler or dispatch mode (FLOP
counting, ``torch.compile``, TorchScript tracing and ONNX export see a plain ``F.linear``).

:class:`Dropout`: ``nn.Dropout`` whose training mask is not ``bernoulli_``'s (MKL's generator): where the C kernels
of :mod:`serac.encoders.kernels` are built, a counter-based draw per element (SplitMix64 from a seed taken from
torch's generator) applied in one pass, and drawn again in the backward instead of stored (forward + backward of
(8, 100, 576) 15x faster than ``F.dropout``: ``bench/bench_kernels.py``); otherwise ``uniform >= p``
(``torch.rand_like``) kept as the scaled float mask for the backward (2x faster: 1.35 vs 2.63 ms). The same
distribution (each element kept with probability ``1 - p``, scaled by ``1 / (1 - p)``), other draws than
``F.dropout``'s, so a seeded run does not repeat a run made before these changes mask for mask.

``SERAC_CPU_OPS=aten`` in the environment turns both off (plain ``F.linear`` / ``F.dropout``), and with them the
other CPU paths of ``serac.encoders.streaming`` that check :func:`active` (depthwise convolutions in oneDNN, the
blocked running sum, the 2-D front end's weight gradient), for A/B runs.

The LSTM encoder (its front end included), the decoder and the joiner keep ``nn.Linear`` / ``nn.Dropout`` and the
arithmetic they had (the LSTM runs in oneDNN already; the yesno recipe's hypotheses depend on the exact float
rounding).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from serac.encoders import kernels

MIN_ROWS = 32


def _onednn_op():
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


_LINEAR_POINTWISE = _onednn_op()


def onednn_available() -> bool:
    return _LINEAR_POINTWISE is not None


def transposed(x: torch.Tensor) -> torch.Tensor:
    """``x.t()`` of a 2-D ``x`` as :func:`matmul_t`'s first operand: contiguous from the transpose kernel where it
    runs (oneDNN would copy the transposed view element by element, ~4x slower), else the view."""
    x_t = kernels.transpose(x)
    return x.t() if x_t is None else x_t


def matmul_t(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` in oneDNN (``a``: (..., K), ``b``: (N, K); strided views are read as they are)."""
    return _LINEAR_POINTWISE(a, b, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    """y = x W^T + b for a 2-D x; the backward's two products also in oneDNN: dX = dY W, dW = dY^T X."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return matmul_t(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = matmul_t(grad, weight.t())
        if ctx.needs_input_grad[1]:
            grad_w = matmul_t(transposed(grad), x.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def tracing() -> bool:
    """Under an exporter (TorchScript tracing or torch.export / dynamo): custom autograd Functions are kept out
    of exported graphs."""
    compiler = getattr(torch, "compiler", None)  # (older torch versions lack some of these)
    return torch.jit.is_tracing() or any(getattr(compiler, name, lambda: False)()
                                         for name in ("is_compiling", "is_exporting"))


_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def compiling() -> bool:
    """Under torch.compile (0.1 us, where :func:`active` takes ~2.5 us). The fast paths test it before their size
    tests: a size test that the compiler sees puts a guard on the batch size or length into the compiled graph, and
    a batch on its other side compiles the graph again (minutes on CPU)."""
    return _is_compiling()


def plain_only() -> bool:
    """True where the plain ops must run: scripting, exporters, compilers, dispatch modes (FLOP counting)."""
    return torch.jit.is_scripting() or tracing() or torch._C._len_torch_dispatch_stack() > 0


def enabled() -> bool:
    """False with ``SERAC_CPU_OPS=aten`` in the environment."""
    return os.environ.get("SERAC_CPU_OPS", "fast") != "aten"


def active() -> bool:
    """Whether the CPU fast paths may run here: switched on (:func:`enabled`) and not :func:`plain_only`."""
    return enabled() and not plain_only()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, in oneDNN where that is faster (see the module docstring)."""
    if (compiling() or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
            or x.dim() < 2 or x.numel() < MIN_ROWS * x.size(-1) or not onednn_available() or not active()):
        return F.linear(x, weight, bias)
    x2 = x.reshape(-1, x.size(-1))
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        y = _OneDnnLinear.apply(x2, weight, bias)
    else:
        y = matmul_t(x2, weight, bias)
    # (a 2-D input's output is the Function's own, not a view of it: callers may modify it in place)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], weight.size(0))


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))  # 0 or 1 / (1 - p)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, its mask drawn by ``rand_like`` on CPU (see the module docstring)."""
    if (not training or p <= 0.0 or p >= 1.0 or x.device.type != "cpu" or not x.is_floating_point()
            or not active()):
        return F.dropout(x, p, training)
    y = kernels.dropout(x, p)  # the counter-based C kernel where it is built (serac.encoders.kernels)
    return _Dropout.apply(x, p) if y is None else y


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
