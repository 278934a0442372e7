"""Feature-domain training augmentations applied by the trainer on a batch of log-mel features (before SpecAugment)."""
from __future__ import annotations

import torch


@torch.no_grad()
def raise_noise_floor(x: torch.Tensor, x_lens: torch.Tensor, prob: float, low: float, high: float,
                      jitter: float = 0.5) -> torch.Tensor:
    """Simulate stationary background noise in the log-mel domain: with probability ``prob`` per utterance, add
    (in the power domain: ``logaddexp``) noise with the spectral shape of the utterance's own background (per-bin
    10th percentile over its frames), at a level ``snr`` nats (mean over bins) below its speech (per-bin 90th
    percentile), snr drawn uniformly from [low, high], with Gaussian jitter of ``jitter`` nats per frame and bin.
    The words stay, the pauses between them fill up: a recording made next to a fan. Draws from torch's global
    RNG. x: (B, T, F) log-mel features (padding left as it is)."""
    out = x.clone()
    for i in range(x.size(0)):
        if float(torch.rand(())) >= prob:
            continue
        n = int(x_lens[i])
        row = x[i, :n]
        q = torch.quantile(row.float(), torch.tensor([0.1, 0.9]), dim=0).to(row.dtype)
        snr = low + (high - low) * float(torch.rand(()))
        floor = q[0] - q[0].mean() + q[1].mean() - snr
        noise = floor + jitter * torch.randn(row.shape, dtype=row.dtype)
        out[i, :n] = torch.logaddexp(row, noise)
    return out
