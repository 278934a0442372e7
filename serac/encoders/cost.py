"""What an encoder costs: measured CPU time of trained models side by side.

    from serac.encoders.cost import time_encoders
    totals = time_encoders({"dense": dense_model, "cw-0.3": skipping_model}, batches, repeats=2)
"""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

import torch


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
