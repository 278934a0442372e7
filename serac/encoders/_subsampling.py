"""Causal frame-stacking subsampling shared by the encoders."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


class StackSubsampling(nn.Module):
    """Stack ``factor`` consecutive frames (non-overlapping) and project: strictly causal within a group,
    no look-ahead beyond the group, and exactly streamable when chunks are multiples of ``factor``.
    Output frame ``i`` sees input frames ``[i*factor, (i+1)*factor)``, so ``look_ahead = factor - 1``."""

    def __init__(self, num_features: int, output_dim: int, factor: int = 4) -> None:
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(num_features * factor, output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, F) -> (N, T // factor, output_dim), without lengths (a chunk, or a branch inside an encoder)."""
        n, t, f = x.shape
        t_out = t // self.factor
        return self.norm(self.proj(x[:, : t_out * self.factor].reshape(n, t_out, f * self.factor)))

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.frames(x), torch.div(x_lens, self.factor, rounding_mode="floor")
