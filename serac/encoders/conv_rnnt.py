"""ConvRNN-T encoder (Radfar et al., Interspeech 2022): a convolutional front end of a local and a global
context CNN encoder feeding an LSTM stack, every part causal and exactly streamable.

Architecture (default sizes in brackets; the paper does not publish its exact sizes, see docs/encoders.md)::

    fbank (N, T, 80) at 100 frames/s
     |-- local CNN encoder: causal 2-D conv 3x3 stride (2,2) -> ReLU -> causal 2-D conv 3x3 stride (2,2)
     |     -> ReLU -> [2] pre-norm residual causal 2-D conv 3x3 blocks -> flatten (channels [32] x 20 bins)
     |     -> linear [256] -> LayerNorm
     |-- global CNN encoder: frame stacking x4 -> linear [192] -> [8] blocks of
     |     LayerNorm -> pointwise conv to 2C -> GLU -> causal dilated depthwise conv (kernel [5],
     |     dilation [1,2,4,8,1,2,4,8]) -> LayerNorm -> Swish -> pointwise conv -> running-mean SE -> + residual;
     |     then LayerNorm
     `-- concatenate -> linear [384] -> LayerNorm [+ input_skip: frame stacking x4 -> linear -> LayerNorm]
           -> LSTM x [3] (hidden [384]) -> linear (output_dim [256]) at 25 frames/s

Both branches subsample time by 4 aligned the same way: output frame ``i`` sees input frames ``<= 4i+3``
(strided causal convolutions are padded by ``kernel - stride`` past frames, so a stride-2 output sees its
own pair of frames and the past). The global branch's squeeze-and-excitation summarises with a causal
running mean (mean of frames ``<= t``), the streamable form of ContextNet's utterance-level pooling.

Streaming: ``look_ahead = 3`` input frames (the rest of the 4-frame group), ``chunk_multiple = 4``. The
state carries each 2-D convolution's last ``kernel_t - stride_t`` input frames, each depthwise convolution's
last ``dilation*(kernel-1)`` frames, each SE block's running sum and count, and the LSTM (h, c).
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import torch
from torch import nn

from serac.encoders import EncoderBase, register_encoder
from serac.encoders.cpu_ops import Dropout, Linear
from serac.encoders.streaming import (CausalConv1d, CausalConv2d, CausalConv2dSubsampling,
                                      RunningMeanSqueezeExcitation, State, check_chunk)
from serac.encoders._subsampling import StackSubsampling


class LocalResidualBlock(nn.Module):
    """Pre-norm residual causal 2-D conv block over (N, C, T, F): ``h + conv(ReLU(LayerNorm_C(h)))``. The
    LayerNorm normalises the channels of each (frame, bin) position, so it is causal and needs no state."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = CausalConv2d(channels, channels, (3, 3), (1, 1))

    def init_cache(self, batch_size: int, freq: int, device: torch.device) -> torch.Tensor:
        return self.conv.init_cache(batch_size, freq, device)

    def forward(self, h: torch.Tensor, cache: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        a = torch.relu(self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        out, cache = self.conv(a, cache)
        return h + out, cache


class LocalContextEncoder(nn.Module):
    """Local CNN encoder: causal 2-D convolutions over time x frequency (time / 4, frequency / 4), then
    stride-1 pre-norm residual causal 2-D conv blocks, flattened, projected and layer-normalised.

    Every part is normalised on purpose: an earlier version (``h + ReLU(conv(h))`` blocks, no output norm) let
    the branch's output grow to ~1e5, almost all of it one input-independent direction; after the fusion
    LayerNorm the LSTM then saw the same vector at every frame, and the model never learned to use the audio
    (it emitted one sentence for every utterance; docs/encoders.md)."""

    def __init__(self, num_features: int, channels: int, num_blocks: int, output_dim: int) -> None:
        super().__init__()
        self.subsampling = CausalConv2dSubsampling(num_features, channels, output_dim)
        self.blocks = nn.ModuleList(LocalResidualBlock(channels) for _ in range(num_blocks))
        self.norm = nn.LayerNorm(output_dim)

    def init_state(self, batch_size: int, device: torch.device) -> State:
        freq = self.subsampling.out_freq
        return {"subsampling": self.subsampling.init_state(batch_size, device),
                "blocks": [b.init_cache(batch_size, freq, device) for b in self.blocks]}

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        h, sub_state = self.subsampling.feature_maps(x, state["subsampling"])
        block_caches = []
        for block, cache in zip(self.blocks, state["blocks"]):
            h, cache = block(h, cache)
            block_caches.append(cache)
        y = self.norm(self.subsampling.project(h))
        return y, {"subsampling": sub_state, "blocks": block_caches}


class GlobalContextBlock(nn.Module):
    """Residual block: pointwise conv -> GLU -> causal dilated depthwise conv -> Swish -> pointwise conv ->
    running-mean squeeze-and-excitation. Receptive field grows by ``dilation*(kernel_size-1)`` frames."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, se_reduction: int, dropout: float) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(channels)
        self.pointwise_in = Linear(channels, 2 * channels)
        self.depthwise = CausalConv1d(channels, channels, kernel_size, dilation=dilation, groups=channels)
        self.norm_mid = nn.LayerNorm(channels)
        self.pointwise_out = Linear(channels, channels)
        self.se = RunningMeanSqueezeExcitation(channels, se_reduction)
        self.dropout = Dropout(dropout)

    def init_state(self, batch_size: int, device: torch.device) -> State:
        return {"conv": self.depthwise.init_cache(batch_size, device), "se": self.se.init_state(batch_size, device)}

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        h = nn.functional.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        h, conv_cache = self.depthwise.forward_time_major(h, state["conv"])
        h = self.pointwise_out(nn.functional.silu(self.norm_mid(h)))
        h, se_state = self.se(h, state["se"])
        return x + self.dropout(h), {"conv": conv_cache, "se": se_state}


class GlobalContextEncoder(nn.Module):
    """Global CNN encoder: frame stacking to 25 frames/s, then dilated causal conv blocks with SE."""

    def __init__(self, num_features: int, channels: int, kernel_size: int, dilations: Sequence[int],
                 se_reduction: int, dropout: float, subsampling_factor: int) -> None:
        super().__init__()
        self.subsampling = StackSubsampling(num_features, channels, subsampling_factor)
        self.blocks = nn.ModuleList(GlobalContextBlock(channels, kernel_size, d, se_reduction, dropout)
                                    for d in dilations)
        self.norm = nn.LayerNorm(channels)  # the residual stream's scale grows with depth (pre-norm blocks)

    def init_state(self, batch_size: int, device: torch.device) -> list:
        return [b.init_state(batch_size, device) for b in self.blocks]

    def forward(self, x: torch.Tensor, state: list) -> Tuple[torch.Tensor, list]:
        h = self.subsampling.frames(x)
        new_state = []
        for block, block_state in zip(self.blocks, state):
            h, block_state = block(h, block_state)
            new_state.append(block_state)
        return self.norm(h), new_state


@register_encoder("conv_rnnt")
class ConvRnntEncoder(EncoderBase):
    """ConvRNN-T: local (2-D) and global (dilated 1-D + SE) causal CNN encoders -> LSTM stack."""

    def __init__(
        self,
        num_features: int,
        output_dim: int = 256,
        local_channels: int = 32,
        local_blocks: int = 2,
        local_dim: int = 256,
        global_channels: int = 192,
        global_kernel_size: int = 5,
        global_dilations: Sequence[int] = (1, 2, 4, 8, 1, 2, 4, 8),
        se_reduction: int = 8,
        lstm_hidden: int = 384,
        lstm_layers: int = 3,
        dropout: float = 0.1,
        input_skip: bool = False,
    ) -> None:
        super().__init__()
        self.subsampling_factor = 4
        self.look_ahead = self.subsampling_factor - 1
        self.chunk_multiple = self.subsampling_factor
        self.output_dim = output_dim
        self.local_encoder = LocalContextEncoder(num_features, local_channels, local_blocks, local_dim)
        self.global_encoder = GlobalContextEncoder(num_features, global_channels, global_kernel_size,
                                                   list(global_dilations), se_reduction, dropout,
                                                   self.subsampling_factor)
        self.fuse = Linear(local_dim + global_channels, lstm_hidden)
        self.fuse_norm = nn.LayerNorm(lstm_hidden)
        # input_skip: add the plain LSTM encoder's front end (4 stacked frames -> linear -> LayerNorm) to the fused
        # CNN features, so the LSTM sees at least what the LSTM baseline sees (serac's addition, not the paper's;
        # docs/encoders.md says why)
        self.input_skip = StackSubsampling(num_features, lstm_hidden, self.subsampling_factor) if input_skip else None
        self.lstm = nn.LSTM(lstm_hidden, lstm_hidden, num_layers=lstm_layers, batch_first=True,
                            dropout=dropout if lstm_layers > 1 else 0.0)
        self.dropout = Dropout(dropout)
        self.out = Linear(lstm_hidden, output_dim)

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Any]:
        # LSTM state kept batch-first like every other state tensor: (N, layers, hidden)
        lstm_shape = (batch_size, self.lstm.num_layers, self.lstm.hidden_size)
        return {"local": self.local_encoder.init_state(batch_size, device),
                "global": self.global_encoder.init_state(batch_size, device),
                "lstm_h": torch.zeros(lstm_shape, device=device), "lstm_c": torch.zeros(lstm_shape, device=device)}

    def _encode(self, x: torch.Tensor, state: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        local, local_state = self.local_encoder(x, state["local"])
        global_, global_state = self.global_encoder(x, state["global"])
        h = self.fuse_norm(self.fuse(torch.cat([local, global_], dim=-1)))
        if self.input_skip is not None:
            h = h + self.input_skip.frames(x)
        lstm_state = (state["lstm_h"].transpose(0, 1).contiguous(), state["lstm_c"].transpose(0, 1).contiguous())
        h, (lstm_h, lstm_c) = self.lstm(self.dropout(h), lstm_state)
        y = self.out(self.dropout(h))
        return y, {"local": local_state, "global": global_state,
                   "lstm_h": lstm_h.transpose(0, 1), "lstm_c": lstm_c.transpose(0, 1)}

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # Everything is causal, so padding after an utterance's end cannot reach its valid frames.
        x = x[:, : x.size(1) // self.subsampling_factor * self.subsampling_factor]
        y, _ = self._encode(x, self.init_state(x.size(0), x.device))
        return y, torch.div(x_lens, self.subsampling_factor, rounding_mode="floor")

    def streaming_forward(self, x: torch.Tensor, state: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        check_chunk(x, self.chunk_multiple, type(self).__name__)
        return self._encode(x, state)
