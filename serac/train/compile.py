"""Training an encoder through ``torch.compile`` (inductor; on CPU its C++ backend, which needs a C++ compiler).

Opt-in (``train.compile: true``, off by default; docs/encoders.md "Third pass", "Eighth pass": since the encoders'
linear layers run in oneDNN, which the compiled code does not call, ContextNet and the Conformer measured slower
compiled than eager on an AMD EPYC): inductor fuses the chains of
memory-bound elementwise passes (LayerNorm, Swish, the squeeze-excitation's gate, residual adds, dropout, the
depthwise taps) that dominate the convolution encoders' steps on CPU. Only the training forward is compiled (the
module in training mode with gradients enabled): validation, decoding, streaming and export run the eager code, so
they neither pay a second compilation nor depend on the compiler. Parameters, state-dict keys and checkpoints are
the eager module's (nothing is wrapped). Compiling is slow on a small CPU (minutes: measured in docs/encoders.md)
and happens on the first training batch, then again for the few shape classes dynamic shapes specialise on.

Usage::

    from serac.train.compile import compile_for_training
    compile_for_training(model.encoder)   # model.encoder(x, x_lens) in training now runs the compiled code
"""
from __future__ import annotations

import shutil

import torch
from torch import nn


def cxx_compiler() -> str:
    """The C++ compiler inductor's CPU backend will call ('' when there is none)."""
    from torch._inductor import config as inductor_config

    name = inductor_config.cpp.cxx[-1] if isinstance(inductor_config.cpp.cxx, tuple) else inductor_config.cpp.cxx
    for candidate in (name, "g++", "c++", "clang++"):
        if candidate and shutil.which(candidate):
            return str(shutil.which(candidate))
    return ""


def _dynamic_outputs(forward):
    """``forward`` whose output's batch and time sizes are marked dynamic: the compiled graph that resumes after an
    eager module would otherwise be specialised on the first batch's sizes."""
    def wrapped(*args, **kwargs):
        y, state = forward(*args, **kwargs)
        torch._dynamo.maybe_mark_dynamic(y, 0)
        torch._dynamo.maybe_mark_dynamic(y, 1)
        return y, state

    return wrapped


def compile_for_training(encoder: nn.Module, dynamic: bool = True) -> nn.Module:
    """Make ``encoder.forward`` run a ``torch.compile``-d copy of itself while the module is in training mode with
    gradients enabled (eager otherwise). ``dynamic=True`` compiles with symbolic batch and time sizes, so the
    bucketed batches of a training run do not each recompile. Returns ``encoder`` (modified in place).

    Raises RuntimeError when ``encoder`` is on CPU and no C++ compiler is installed (inductor's CPU backend needs
    one), or when it was already compiled."""
    if getattr(encoder, "_compiled_for_training", False):
        raise RuntimeError(f"{type(encoder).__name__} is already compiled for training")
    device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    if device.type == "cpu" and not cxx_compiler():
        raise RuntimeError("train.compile: torch.compile's CPU backend (inductor) needs a C++ compiler (g++ or "
                           "clang++) on PATH, and none was found; install one (e.g. apt-get install g++) or set "
                           "train.compile: false")
    # the 2-D subsampling front end runs eager (its own oneDNN fast path) between compiled graphs: compiled,
    # inductor's backward of its strided convolution tests the feature map's memory format and so guards the graph
    # on the exact time length (`Eq(160*(T//4), 2560)`), and every new length compiled it again (minutes each)
    from serac.encoders.streaming import CausalConv2dSubsampling

    for module in encoder.modules():
        if isinstance(module, CausalConv2dSubsampling):
            module.forward = torch.compiler.disable(_dynamic_outputs(module.forward), recursive=True)
    eager_forward = encoder.forward
    encoder._compiled_training_forward = torch.compile(eager_forward, dynamic=dynamic)

    def forward(*args, **kwargs):
        if encoder.training and torch.is_grad_enabled():
            # contiguous tensors: the compiled graph guards on strides, and a sliced (non-contiguous) batch would
            # compile it a second time, as slowly as the first
            args = tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)
            return encoder._compiled_training_forward(*args, **kwargs)
        return eager_forward(*args, **kwargs)

    forward.__doc__ = eager_forward.__doc__
    encoder.forward = forward  # an instance attribute: state_dict, parameters and the class are untouched
    encoder._compiled_for_training = True
    return encoder
