"""What an encoder costs: parameters, counted FLOPs per second of audio, and measured CPU time of trained models
side by side.

    from serac.encoders.cost import count_parameters, encoder_flops_per_second, time_encoders
    count_parameters(encoder), encoder_flops_per_second(encoder) / 1e9          # M parameters, GFLOPs / s of audio
    totals = time_encoders({"dense": dense_model, "cw-0.3": skipping_model}, batches, repeats=2)
"""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

import torch
from torch import nn

from serac.encoders.streaming import ChunkedSelfAttention


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _lstm_flops(module: nn.LSTM, batch: int, frames: int) -> int:
    """Multiply-accumulates x2 of an LSTM stack (FlopCounterMode has no formula for aten.lstm)."""
    directions = 2 if module.bidirectional else 1
    hidden, proj = module.hidden_size, module.proj_size
    out_dim = proj if proj > 0 else hidden
    macs = 0
    for layer in range(module.num_layers):
        in_dim = module.input_size if layer == 0 else out_dim * directions
        macs += directions * (4 * hidden * (in_dim + out_dim) + (hidden * proj if proj > 0 else 0))
    return 2 * macs * batch * frames


@torch.no_grad()
def encoder_flops_per_second(encoder: nn.Module, num_features: int = 80, seconds: float = 4.0,
                             frames_per_second: int = 100) -> float:
    """Encoder FLOPs (multiply-accumulates x2 of matmuls, convolutions, attention and LSTMs) per second of
    audio, counted by ``torch.utils.flop_counter.FlopCounterMode`` on one utterance of ``seconds`` seconds
    (elementwise work is not counted). A few seconds rather than one, so chunked attention runs whole chunks
    and the figure is the steady-state cost."""
    from torch.utils.flop_counter import FlopCounterMode

    frames = int(round(seconds * frames_per_second))
    x = torch.randn(1, frames, num_features, device=next(encoder.parameters()).device)
    lstm_flops = []

    def lstm_hook(module: nn.LSTM, inputs, _output) -> None:
        x_in = inputs[0]
        n, t = (x_in.size(0), x_in.size(1)) if module.batch_first else (x_in.size(1), x_in.size(0))
        lstm_flops.append(_lstm_flops(module, n, t))

    hooks = [m.register_forward_hook(lstm_hook) for m in encoder.modules() if isinstance(m, nn.LSTM)]
    # chunked attention counted one chunk window at a time: the model's FLOPs, not the out-of-window scores that
    # the blocked form computes (and masks) for speed
    attentions = [m for m in encoder.modules() if isinstance(m, ChunkedSelfAttention)]
    own_block_frames = [m.__dict__.get("block_frames") for m in attentions]  # set on the instance, or None
    was_training = encoder.training
    encoder.eval()
    try:
        for m in attentions:
            m.block_frames = 0
        with FlopCounterMode(display=False) as counter:
            encoder(x, torch.tensor([frames], device=x.device))
    finally:
        encoder.train(was_training)
        for h in hooks:
            h.remove()
        for m, own in zip(attentions, own_block_frames):
            if own is None:
                del m.block_frames
            else:
                m.block_frames = own
    return (counter.get_total_flops() + sum(lstm_flops)) / seconds


@torch.no_grad()
def time_encoders(models: Dict[str, torch.nn.Module], batches: List[Tuple[torch.Tensor, torch.Tensor]],
                  repeats: int) -> Dict[str, Dict[str, float]]:
    """Encoder CPU and wall seconds per model (summed over batches and repeats) and executed FLOPs per pass."""
    names = list(models)
    totals = {n: {"encoder_cpu_s": 0.0, "encoder_wall_s": 0.0, "flops": 0.0, "dense_flops": 0.0} for n in names}
    for name in names:  # warm-up: first-call allocations are not the models' cost
        models[name].encode(*batches[0])
    for r in range(repeats):
        for b, (feats, lens) in enumerate(batches):
            k = (b + r) % len(names)
            for name in names[k:] + names[:k]:
                model = models[name]
                c0, w0 = time.process_time(), time.perf_counter()
                model.encode(feats, lens)
                totals[name]["encoder_cpu_s"] += time.process_time() - c0
                totals[name]["encoder_wall_s"] += time.perf_counter() - w0
                if r == 0 and getattr(model.encoder, "last_flops", None) is not None:
                    totals[name]["flops"] += float(model.encoder.last_flops.sum())
                    totals[name]["dense_flops"] += float(model.encoder.last_dense_flops.sum())
                if r == 0 and getattr(model.encoder, "last_gates", None):
                    add_gate_counts(totals[name], model.encoder.last_gates, lens, model.encoder.subsampling_factor)
    for t in totals.values():
        if "gate_on_frames" in t:
            t["gate_on_fraction"] = [[on / max(t["gate_frames"], 1) for on in block] for block in t.pop("gate_on_frames")]
    return totals


def add_gate_counts(total: Dict, gates: List[torch.Tensor], lens: torch.Tensor, subsampling_factor: int) -> None:
    """Accumulate, per block, the valid frames each module ran on (gates: per block (N, T', k) bool, already
    False on padding) and the number of valid frames."""
    counts = [g.sum((0, 1)).tolist() for g in gates]
    prev = total.setdefault("gate_on_frames", [[0] * len(c) for c in counts])
    total["gate_on_frames"] = [[a + b for a, b in zip(pb, cb)] for pb, cb in zip(prev, counts)]
    total["gate_frames"] = total.get("gate_frames", 0) + int(
        torch.div(lens, subsampling_factor, rounding_mode="floor").sum())
