"""Small C kernels for the encoders' training step, built on first use with the system C compiler, called through
ctypes.

What they replace (one thread, 2-core AMD EPYCs, 2026-12-02; ``bench/bench_kernels.py`` prints the figures):

* :func:`depthwise_conv`: the causal depthwise convolution of ``CausalConv1d`` in training, forward and backward,
  in the time-major (N, T, C) layout: the cached frames and the input read where they lie (no concatenation), the
  taps' weights (forward, input gradient) or the output gradient's rows (weight and bias gradients) held in
  registers while the rows stream past (the loops are bound by loads). Forward + backward of (8, 100, 256) with 5
  taps: 0.42 -> 0.30 ms, (8, 400, 256) 1.98 -> 0.95 ms, the Conformer's (8, 100, 144) with 15 taps 0.39 -> 0.24 ms
  (against the concatenation, oneDNN's forward and input gradient and the weight-gradient kernel below). ContextNet
  has 66 such convolutions, the Conformer 9, ConvRNN-T 8. Decoding keeps oneDNN's (no faster there).
* :func:`depthwise_weight_grad`: the weight and bias gradients of the same convolution from a padded input (the
  path without ``depthwise_conv``: a cache that needs a gradient); ATen needs a multiply and a reduction per tap
  (0.29 vs 0.06 ms for (8, 100, 256) and 5 taps).
* :func:`depthwise_input_grad`: the padded input's gradient of the same convolution, used where it has a dilation
  (ConvRNN-T's global blocks): oneDNN's dilated depthwise backward took 4.8 ms for (8, 100, 144), dilation 8,
  against 0.06 ms (without a dilation oneDNN's is as fast or faster and is kept).
* :func:`dropout`: dropout whose keep decision for element ``i`` is SplitMix64's draw for ``i`` from a seed taken
  from torch's default generator (one ``randint`` per call, so ``torch.manual_seed`` repeats a run, whatever the
  thread count); no mask is stored: the backward draws it again from the seed. Forward + backward of (8, 100, 576):
  0.30 ms, against 2.35 ms with a ``rand_like`` mask (MKL's Mersenne Twister: ~2 ns an element here, ~6 on an
  Intel Xeon) and 4.4 ms for ``F.dropout`` (``bernoulli_``).
* :func:`transpose`: ``x.t().contiguous()`` in 16 x 16 blocks transposed in registers (two-source shuffles), for
  the linear layers' weight gradients (oneDNN's product reads the output gradient transposed) and the front end's:
  0.21 -> 0.06 ms for 800 x 576 (ATen copies the strided view element by element).
* :func:`im2col_nhwc`: the front end's tap matrix for its weight gradient, row by row, each row written once
  (11.8 -> 7.0 ms for the Conformer's second convolution; ATen: a strided copy per tap across the whole matrix).
* :func:`chunked_attention`: the training forward and backward of ``ChunkedSelfAttention``'s block form (the
  Conformer's and the amortized Transformer's attention core) in one pass per (utterance, head, block): scores,
  masking, the block's relative bias, softmax, dropout and the weighted sum in the L1/L2 cache, the products in
  4 x 3-vector register tiles; 4.75 vs 2.63 ms forward + backward for (8, 100, 144), 4 heads (ATen: six batched
  MKL matmuls at ~68 GFLOP/s and a dozen passes over the scores). Dropout uses :func:`dropout`'s draws, indexed
  as the ATen path's weights tensor: the same weights are dropped.

With the first depthwise-gradient and dropout kernels a training step (8 x 4 s, one thread) of ContextNet took
6-9% less time, of the Conformer 7-8%, of ConvRNN-T 3-10% (two runs; docs/encoders.md, "Eighth pass"); the attention
kernel took the Conformer's another 6-11% ("Ninth pass"); ``depthwise_conv``, ``transpose`` and ``im2col_nhwc``
ContextNet's another 10-14% ("Tenth pass").

The maths are those of the ATen paths (float32, the same products; sums in another order, so results differ by
float rounding, ~1e-6 relative; the transpose and the tap matrix are exact copies; the attention's softmax takes
its exponential from a polynomial accurate to ~2e-7), and the masks have the same distribution (each element kept
with probability ``1 - p``, ``p`` rounded to 2^-32) but are other draws than ``rand_like``'s.

Build: ``$CC`` (default ``cc``) ``-O3 -march=native`` into ``$SERAC_KERNEL_DIR`` (default
``~/.cache/serac/kernels``), one file per source, compiler and CPU (their hash names it), written atomically, so
a cluster whose nodes differ builds one per kind of node; ~0.3 s. Without a compiler, or when the build fails,
the callers keep the ATen / oneDNN paths (one warning names the reason). ``SERAC_KERNELS=off`` in the
environment turns the kernels off (A/B runs); ``SERAC_CPU_OPS=aten`` turns them off with the other CPU paths.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_kernels.c")
CFLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c99")

_lib: Optional[ctypes.CDLL] = None
_tried = False
_reason = ""


def enabled() -> bool:
    """False with ``SERAC_KERNELS=off`` in the environment, or where :func:`serac.encoders.cpu_ops.enabled` is
    (``SERAC_CPU_OPS=aten``)."""
    from serac.encoders import cpu_ops  # (cpu_ops imports this module)

    return os.environ.get("SERAC_KERNELS", "on") != "off" and cpu_ops.enabled()


def _cpu_signature() -> str:
    """The processor's model and instruction-set flags (``-march=native`` builds for them): nodes of a cluster
    that share a home directory but differ in either get builds of their own."""
    found = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part") and key not in found:
                    found[key] = line
    except OSError:
        pass
    return "".join(found.values()) + platform.processor() + platform.machine()


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def build(directory: Optional[Path] = None, cc: Optional[str] = None) -> Path:
    """Compile ``_kernels.c`` unless an up-to-date build exists; return the shared library's path. Raises
    RuntimeError naming the compiler and its output when it cannot be built."""
    cc = cc or os.environ.get("CC", "cc")
    cc_path = shutil.which(cc)
    if cc_path is None:
        raise RuntimeError(f"no C compiler: {cc!r} is not on PATH (set CC)")
    directory = Path(directory or os.environ.get("SERAC_KERNEL_DIR")
                     or Path.home() / ".cache" / "serac" / "kernels")
    source = SOURCE.read_bytes()
    key = hashlib.sha1(source + " ".join(CFLAGS).encode() + _compiler_version(cc_path).encode()
                       + _cpu_signature().encode()).hexdigest()[:16]
    target = directory / f"serac_kernels-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        proc = subprocess.run([cc_path, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc_path} {' '.join(CFLAGS)} {SOURCE} failed ({proc.returncode}):\n"
                               f"{proc.stderr.strip()}")
        os.replace(tmp, target)  # atomic: a concurrent build writes the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> Optional[ctypes.CDLL]:
    global _lib, _tried, _reason
    if not _tried:
        _tried = True
        try:
            lib = ctypes.CDLL(str(build()))
            i64, vp = ctypes.c_int64, ctypes.c_void_p
            lib.depthwise_forward.argtypes = [vp] * 5 + [i64] * 8
            lib.depthwise_forward.restype = ctypes.c_int
            lib.depthwise_weight_grad.argtypes = [vp] * 5 + [i64] * 8
            lib.depthwise_weight_grad.restype = ctypes.c_int
            lib.depthwise_input_grad.argtypes = [vp] * 3 + [i64] * 8
            lib.depthwise_input_grad.restype = ctypes.c_int
            lib.dropout_forward.argtypes = [vp, vp, i64, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_float]
            lib.dropout_forward.restype = None
            lib.im2col_nhwc.argtypes = [vp, vp] + [i64] * 12
            lib.im2col_nhwc.restype = None
            lib.transpose_matrix.argtypes = [vp, vp, i64, i64]
            lib.transpose_matrix.restype = None
            shape = ctypes.POINTER(_AttentionShape)
            lib.chunked_attention_forward.argtypes = [vp] * 7 + [shape]
            lib.chunked_attention_forward.restype = ctypes.c_int
            lib.chunked_attention_backward.argtypes = [vp] * 10 + [shape]
            lib.chunked_attention_backward.restype = ctypes.c_int
            _lib = lib
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            _reason = str(e)
            log.warning("serac C kernels unavailable, using the ATen paths instead: %s", e)
    return _lib


class _AttentionShape(ctypes.Structure):
    """``att_shape`` of ``_kernels.c``."""
    _fields_ = ([(name, ctypes.c_int64) for name in
                 ("n", "heads", "dh", "t_len", "l_len", "block", "nb", "span", "q_sn", "q_st", "k_sn", "k_st", "v_sn",
                  "v_st")]
                + [("score_divisor", ctypes.c_float), ("seed", ctypes.c_uint64), ("threshold", ctypes.c_uint32),
                   ("keep_scale", ctypes.c_float), ("dropout", ctypes.c_int)])


def available() -> bool:
    """Whether the kernels are switched on (:func:`enabled`) and built (the first call builds them)."""
    return enabled() and _load() is not None


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' if it is True or was not asked)."""
    return _reason if enabled() else "switched off (SERAC_KERNELS=off or SERAC_CPU_OPS=aten)"


def _fits(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def depthwise_weight_grad(grad: torch.Tensor, padded: torch.Tensor, kernel: int, stride: int, dilation: int,
                          with_bias: bool) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """``(dW (C, kernel), db (C) or None)`` of a depthwise convolution whose output ``t``, tap ``k`` reads
    ``padded[:, t * stride + k * dilation]``; ``grad``: (N, T_out, C), ``padded``: (N, T_pad, C). None where the
    kernel cannot run (not available, not CPU float32): the caller computes it."""
    if not _fits(grad, padded) or not available():
        return None
    n, t_out, c = grad.shape
    if padded.size(1) < (t_out - 1) * stride + (kernel - 1) * dilation + 1:
        raise ValueError(f"depthwise_weight_grad: padded input of {padded.size(1)} frames is shorter than "
                         f"{t_out} outputs of stride {stride}, kernel {kernel}, dilation {dilation} read")
    return _weight_grad(grad.contiguous(), padded.contiguous(), None, kernel, stride, dilation, with_bias)


def _weight_grad(grad: torch.Tensor, x: torch.Tensor, cache: Optional[torch.Tensor], kernel: int, stride: int,
                 dilation: int, with_bias: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The C call of the weight and bias gradients: contiguous (N, T_out, C) ``grad``, the input ``x`` (N, T, C)
    after ``cache`` (N, C, cache frames; None: no cache frames)."""
    n, t_out, c = grad.shape
    dw = torch.empty(c, kernel)
    db = torch.empty(c) if with_bias else None
    cf = 0 if cache is None else cache.size(2)
    if _lib.depthwise_weight_grad(grad.data_ptr(), x.data_ptr(), _ptr(cache), dw.data_ptr(), _ptr(db), n, t_out,
                                  x.size(1), cf, c, kernel, stride, dilation) != 0:
        raise MemoryError("depthwise_weight_grad: out of memory for the partial sums")
    return dw, db


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def depthwise_input_grad(grad: torch.Tensor, weight: torch.Tensor, t_pad: int, stride: int, dilation: int
                         ) -> Optional[torch.Tensor]:
    """The (N, t_pad, C) gradient of the padded input of the same convolution (``weight``: (C, kernel)); None
    where the kernel cannot run."""
    if not _fits(grad, weight) or not available():
        return None
    n, t_out, c = grad.shape
    kernel = weight.size(-1)
    if t_pad < (t_out - 1) * stride + (kernel - 1) * dilation + 1:
        raise ValueError(f"depthwise_input_grad: {t_pad} padded frames cannot hold {t_out} outputs of stride "
                         f"{stride}, kernel {kernel}, dilation {dilation}")
    out = torch.empty(n, t_pad, c)
    _input_grad(grad.contiguous(), weight, out, 0, stride, dilation)
    return out


def _input_grad(grad: torch.Tensor, weight: torch.Tensor, grad_x: torch.Tensor, cache_frames: int, stride: int,
                dilation: int) -> None:
    """The C call writing ``grad_x``, the gradient of ``x`` (N, T, C) read after ``cache_frames`` cached frames."""
    n, t_out, c = grad.shape
    weight = weight.detach().reshape(c, -1).contiguous()
    if _lib.depthwise_input_grad(grad.data_ptr(), weight.data_ptr(), grad_x.data_ptr(), n, t_out,
                                 grad_x.size(1), cache_frames, c, weight.size(1), stride, dilation) != 0:
        raise MemoryError("depthwise_input_grad: out of memory for the transposed taps")


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cache, weight, bias, stride, dilation):  # type: ignore[override]
        n, t_in, c = x.shape
        kernel = weight.size(-1)
        t_out = (cache.size(2) + t_in - dilation * (kernel - 1) - 1) // stride + 1
        y = torch.empty(n, t_out, c)
        w = weight.detach().reshape(c, kernel).contiguous()
        if _lib.depthwise_forward(x.data_ptr(), cache.data_ptr(), w.data_ptr(), _ptr(bias), y.data_ptr(), n, t_in,
                                  t_out, cache.size(2), c, kernel, stride, dilation) != 0:
            raise MemoryError("depthwise_conv: out of memory for the transposed taps and cache")
        ctx.save_for_backward(x, cache, weight)
        ctx.args = (stride, dilation, bias is not None)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, cache, weight = ctx.saved_tensors
        stride, dilation, has_bias = ctx.args
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            _input_grad(grad, weight, grad_x, cache.size(2), stride, dilation)
        if ctx.needs_input_grad[2] or (has_bias and ctx.needs_input_grad[3]):
            grad_weight, grad_bias = _weight_grad(grad, x, cache, weight.size(-1), stride, dilation,
                                                  has_bias and ctx.needs_input_grad[3])
            grad_weight = grad_weight.view_as(weight) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_weight, grad_bias, None, None


def depthwise_conv(x: torch.Tensor, cache: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   stride: int, dilation: int) -> Optional[torch.Tensor]:
    """``CausalConv1d``'s depthwise convolution in training, in the time-major layout, forward and backward in C:
    the padded input is ``cache`` (N, C, cache frames; ``CausalConv1d``'s layout) followed by ``x`` (N, T, C), read
    where it lies (no concatenation; the input gradient is written once per frame). ``weight``:
    (C, 1, kernel) or (C, kernel). Output (N, T_out, C). None where the kernel cannot run (not available, not CPU
    float32, or a cache that needs a gradient): the caller keeps its path."""
    tensors = [x, cache, weight] + ([] if bias is None else [bias])
    if cache.requires_grad or not _fits(*tensors) or not available():
        return None
    kernel = weight.size(-1)
    if cache.size(2) + x.size(1) < dilation * (kernel - 1) + 1:
        raise ValueError(f"depthwise_conv: {cache.size(2)} cached + {x.size(1)} input frames are shorter than the "
                         f"kernel's span ({kernel} taps, dilation {dilation})")
    bias = None if bias is None else bias.contiguous()
    return _DepthwiseConv.apply(x.contiguous(), cache.detach().contiguous(), weight, bias, stride, dilation)


def transpose(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x.t().contiguous()`` of a contiguous 2-D CPU float32 ``x``, in 16 x 16 blocks transposed in registers (the
    same values: a copy). None where the kernel cannot run."""
    if x.dim() != 2 or not x.is_contiguous() or not _fits(x) or not available():
        return None
    out = torch.empty(x.size(1), x.size(0))
    _lib.transpose_matrix(x.data_ptr(), out.data_ptr(), x.size(0), x.size(1))
    return out


def im2col_nhwc(x: torch.Tensor, kernel: Tuple[int, int], stride: Tuple[int, int], padding: Tuple[int, int],
                out: Tuple[int, int]) -> Optional[torch.Tensor]:
    """:func:`serac.encoders.streaming._im2col_nhwc` (the tap matrix of a 2-D convolution of a contiguous (N, T, F, C)
    input, zero padding ``padding`` on both sides) with each row written once, in order. None where the kernel
    cannot run (not available, not CPU float32, not contiguous)."""
    if x.dim() != 4 or not x.is_contiguous() or not _fits(x) or not available():
        return None
    n, t_in, f_in, c = x.shape
    cols = torch.empty(n * out[0] * out[1], kernel[0] * kernel[1] * c)
    _lib.im2col_nhwc(x.data_ptr(), cols.data_ptr(), n, t_in, f_in, c, *kernel, *stride, *padding, *out)
    return cols


def _threshold(p: float) -> int:
    return min(int(round(p * 2.0 ** 32)), 2 ** 32 - 1)


def _dropout_draw(p: float) -> Tuple[int, int, float]:
    """``(seed, threshold, scale)`` of the counter-based dropout with probability ``0 < p < 1``: the seed is one
    draw from torch's default CPU generator (so a seeded run repeats, and the attention kernel drops the weights
    :func:`dropout` would drop with the same generator state)."""
    return int(torch.randint(0, 2 ** 62, (), dtype=torch.int64)), _threshold(p), 1.0 / (1.0 - p)


class _Dropout(torch.autograd.Function):
    """Dropout with a counter-based mask: the backward draws the forward's mask again from the saved seed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, draw: Tuple[int, int, float]) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        out = torch.empty_like(x)
        ctx.args = draw
        _lib.dropout_forward(x.data_ptr(), out.data_ptr(), x.numel(), *ctx.args)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        _lib.dropout_forward(grad.data_ptr(), out.data_ptr(), grad.numel(), *ctx.args)  # the same mask
        return out, None


def dropout(x: torch.Tensor, p: float) -> Optional[torch.Tensor]:
    """Training-mode dropout of a CPU float32 ``x`` (0 < p < 1) by the counter-based kernel, or None where it
    cannot run. The seed is one draw from torch's default CPU generator."""
    if not _fits(x) or not available():
        return None
    return _Dropout.apply(x, _dropout_draw(p))


class _ChunkedAttention(torch.autograd.Function):
    """:func:`chunked_attention`'s forward and backward by the C kernels; the softmax is saved for the backward,
    the dropout mask is drawn again from the seed."""

    @staticmethod
    def forward(ctx, q, keys, values, bias, valid, shape):  # type: ignore[override]
        n, t, dim = q.shape
        out = torch.empty(n, t, dim)
        probs = torch.empty(n, shape.heads, shape.nb, shape.block, shape.span)
        if _lib.chunked_attention_forward(q.data_ptr(), keys.data_ptr(), values.data_ptr(), valid.data_ptr(),
                                          bias.data_ptr(), out.data_ptr(), probs.data_ptr(), ctypes.byref(shape)):
            raise MemoryError("chunked_attention: out of memory for the block buffers")
        ctx.save_for_backward(q, keys, values, valid, probs)
        ctx.shape = shape
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        q, keys, values, valid, probs = ctx.saved_tensors
        shape = ctx.shape
        grad = grad.contiguous()
        dq = torch.empty(q.shape)
        dk, dv = torch.zeros(keys.shape), torch.zeros(values.shape)
        dbias = torch.zeros(shape.heads, shape.block, shape.span)
        if _lib.chunked_attention_backward(q.data_ptr(), keys.data_ptr(), values.data_ptr(), valid.data_ptr(),
                                           probs.data_ptr(), grad.data_ptr(), dq.data_ptr(), dk.data_ptr(),
                                           dv.data_ptr(), dbias.data_ptr(), ctypes.byref(shape)):
            raise MemoryError("chunked_attention: out of memory for the block buffers")
        return dq, dk, dv, dbias, None, None


def chunked_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
                      bias: torch.Tensor, heads: int, block: int, dropout_p: float) -> Optional[torch.Tensor]:
    """:meth:`serac.encoders.streaming.ChunkedSelfAttention._attend_blocks`'s attention in training, or None where
    the kernel cannot run. ``q``: (N, T, D) projected queries (rows may be strided, channels contiguous); ``keys``,
    ``values``: (N, L, D), cache-prefixed (L = left + T); ``valid``: (N, L) bool; ``bias``: (heads, block, span)
    block bias, ``-inf`` outside each query's window (span = block + left). Blocks of ``block`` queries, the last
    one partial. ``dropout_p`` > 0 drops attention weights with a seed drawn from torch's default generator, as
    :func:`dropout` would (the same weights are dropped as on the ATen path with the same generator state)."""
    if not _fits(q, keys, values, bias) or valid.dtype != torch.bool or not available():
        return None
    n, t, dim = q.shape
    dh = dim // heads
    span = bias.size(-1)
    q, keys, values = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, keys, values))
    if keys.shape != values.shape or keys.size(1) != t + span - block or bias.shape != (heads, block, span):
        raise ValueError(f"chunked_attention: keys {tuple(keys.shape)}, values {tuple(values.shape)}, bias "
                         f"{tuple(bias.shape)} do not fit queries {tuple(q.shape)}, {heads} heads, blocks of {block}")
    seed, threshold, scale = _dropout_draw(dropout_p) if dropout_p > 0 else (0, 0, 1.0)
    shape = _AttentionShape(n, heads, dh, t, keys.size(1), block, -(-t // block), span, q.stride(0), q.stride(1),
                            keys.stride(0), keys.stride(1), values.stride(0), values.stride(1), math.sqrt(dh), seed,
                            threshold, scale, int(dropout_p > 0))
    return _ChunkedAttention.apply(q, keys, values, bias.contiguous(), valid.contiguous().view(torch.uint8), shape)
