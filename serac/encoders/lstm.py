"""Streaming (causal) LSTM encoder: subsampling front end + unidirectional LSTM stack + projection.

This is the plain LSTM RNN-T encoder of the ConvRNN-T paper's comparison and serac's main-recipe encoder.

Front ends (``subsampling``), both time / 4, both exactly streamable in chunks of multiples of 4 frames:

- ``stack``: stack 4 frames and project (no state; output frame ``i`` sees input frames ``[4i, 4i+3]``).
- ``conv2d``: two causal 3x3 stride-2 convolutions over time x frequency (icefall's LSTM recipe uses the
  non-causal form of this front end), state = each convolution's past frames. Output frame ``i`` sees input
  frames ``<= 4i+3``. The convolutions learn local spectro-temporal patterns that a frame-stacking linear map
  has to learn position by position, which makes the LSTM learn faster on small corpora.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

from serac.encoders import EncoderBase, register_encoder
from serac.encoders.streaming import CausalConv2dSubsampling, check_chunk
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
        subsampling: str = "stack",
        conv_channels: int = 32,
    ) -> None:
        super().__init__()
        if subsampling not in ("stack", "conv2d"):
            raise ValueError(f"lstm encoder: subsampling must be 'stack' or 'conv2d', got {subsampling!r}")
        if subsampling == "conv2d" and subsampling_factor != 4:
            raise ValueError(f"lstm encoder: the conv2d front end subsamples by 4, got subsampling_factor "
                             f"{subsampling_factor}")
        self.num_features = num_features
        self.subsampling_factor = subsampling_factor
        self.chunk_multiple = subsampling_factor
        self.look_ahead = subsampling_factor - 1
        self.output_dim = output_dim
        self.subsampling_kind = subsampling
        if subsampling == "stack":
            self.subsampling = StackSubsampling(num_features, hidden_dim, subsampling_factor)
        else:
            # the arithmetic of before serac.encoders.cpu_ops: the yesno recipe's hypotheses depend on it
            self.subsampling = CausalConv2dSubsampling(num_features, conv_channels, hidden_dim, fast_cpu_ops=False)
            self.subsampling_norm = nn.LayerNorm(hidden_dim)
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, output_dim)

    def _front(self, x: torch.Tensor, sub_state: Any) -> Tuple[torch.Tensor, Any]:
        if self.subsampling_kind == "stack":
            return self.subsampling.frames(x), None
        h, sub_state = self.subsampling(x, sub_state)
        return self.subsampling_norm(h), sub_state

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x[:, : x.size(1) // self.subsampling_factor * self.subsampling_factor]
        sub_state = (self.subsampling.init_state(x.size(0), x.device) if self.subsampling_kind == "conv2d"
                     else None)
        h, _ = self._front(x, sub_state)
        # The LSTM is causal, so padding after an utterance's end cannot affect its valid frames:
        # no packing needed (and packing costs time on CPU).
        h, _ = self.lstm(self.dropout(h))
        return self.out(self.dropout(h)), torch.div(x_lens, self.subsampling_factor, rounding_mode="floor")

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Any]:
        # batch-first like every other encoder's state tensors: (N, layers, hidden)
        shape = (batch_size, self.lstm.num_layers, self.lstm.hidden_size)
        state: Dict[str, Any] = {"lstm_h": torch.zeros(shape, device=device),
                                 "lstm_c": torch.zeros(shape, device=device)}
        if self.subsampling_kind == "conv2d":
            state["subsampling"] = self.subsampling.init_state(batch_size, device)
        return state

    def streaming_forward(self, x: torch.Tensor, state: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        check_chunk(x, self.chunk_multiple, type(self).__name__)
        h, sub_state = self._front(x, state.get("subsampling"))
        lstm_state = (state["lstm_h"].transpose(0, 1).contiguous(), state["lstm_c"].transpose(0, 1).contiguous())
        h, (lstm_h, lstm_c) = self.lstm(h, lstm_state)
        new_state: Dict[str, Any] = {"lstm_h": lstm_h.transpose(0, 1), "lstm_c": lstm_c.transpose(0, 1)}
        if sub_state is not None:
            new_state["subsampling"] = sub_state
        return self.out(h), new_state
