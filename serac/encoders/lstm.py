"""Streaming (causal) LSTM encoder: frame-stacking subsampling + unidirectional LSTM stack + projection.

This is the plain LSTM RNN-T encoder of the ConvRNN-T paper's comparison and serac's first encoder.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from serac.encoders import EncoderBase, register_encoder
from serac.encoders._subsampling import StackSubsampling


@register_encoder("lstm")
class LstmEncoder(EncoderBase):
    def __init__(
        self,
        num_features: int,
        hidden_dim: int = 320,
        num_layers: int = 3,
        output_dim: int = 256,
        subsampling_factor: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.subsampling_factor = subsampling_factor
        self.chunk_multiple = subsampling_factor
        self.look_ahead = subsampling_factor - 1
        self.output_dim = output_dim
        self.subsampling = StackSubsampling(num_features, hidden_dim, subsampling_factor)
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, lens = self.subsampling(x, x_lens)
        # The LSTM is causal, so padding after an utterance's end cannot affect its valid frames:
        # no packing needed (and packing costs time on CPU).
        h, _ = self.lstm(self.dropout(h))
        return self.out(self.dropout(h)), lens

    def init_state(self, batch_size: int, device: torch.device):
        shape = (self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        return (torch.zeros(shape, device=device), torch.zeros(shape, device=device))

    def streaming_forward(self, x: torch.Tensor, state):
        lens = torch.full((x.size(0),), x.size(1), dtype=torch.long, device=x.device)
        h, _ = self.subsampling(x, lens)
        h, state = self.lstm(h, state)
        return self.out(h), state
