"""Streaming ContextNet encoder (Han et al., 2020) made causal: residual blocks of causal depthwise-separable
1-D convolutions with Swish and squeeze-and-excitation whose pooling is a causal running mean.

Architecture (defaults in brackets)::

    fbank (N, T, 80) at 100 frames/s
      -> block 0: 80 -> C, one conv layer                                    (100 frames/s)
      -> block 1: stride 2, [5] conv layers                                  ( 50 frames/s)
      -> block 2: stride 2, [5] conv layers                                  ( 25 frames/s)
      -> blocks 3 .. [13]: [5] conv layers each                              ( 25 frames/s)
      -> linear (output_dim [256])

    block:  conv layer x L -> running-mean SE -> + residual -> Swish
            conv layer = causal depthwise conv (kernel [5], stride on the block's first layer) -> pointwise
                         linear -> LayerNorm -> Swish
            residual   = identity, or (channel change / stride) a causal conv with kernel = stride (frame
                         stacking) -> LayerNorm
    C = [256] channels everywhere after block 0.

ContextNet's SE pools over the whole utterance; here the summary at frame ``t`` is the mean of frames
``<= t``, which keeps a growing global context and streams with a carried running sum and count. Strided
convolutions are padded by ``kernel - stride`` past frames, so stride-2 output ``j`` sees input frames
``<= 2j+1``; after both strides output ``i`` sees input frames ``<= 4i+3``. LayerNorm replaces BatchNorm,
whose training statistics would mix padding and future frames into every frame.

Streaming: ``look_ahead = 3`` input frames, ``chunk_multiple = 4``. The state carries, per convolution,
the last ``kernel - stride`` input frames (``kernel - 1`` for stride 1), and per block the SE running sum
and count.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from serac.encoders import EncoderBase, register_encoder
from serac.encoders.cpu_ops import Dropout, Linear
from serac.encoders.streaming import CausalConv1d, RunningMeanSqueezeExcitation, State, check_chunk


class SeparableConvLayer(nn.Module):
    """Causal depthwise conv (optionally strided) -> pointwise linear -> LayerNorm -> Swish, on (N, T, C)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.depthwise = CausalConv1d(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels)
        self.pointwise = Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, cache = self.depthwise.forward_time_major(x, cache)
        return nn.functional.silu(self.norm(self.pointwise(h))), cache


class ContextNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, kernel_size: int, stride: int,
                 se_reduction: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SeparableConvLayer(in_channels if i == 0 else out_channels, out_channels, kernel_size,
                               stride if i == 0 else 1)
            for i in range(num_layers))
        self.se = RunningMeanSqueezeExcitation(out_channels, se_reduction)
        self.residual = None
        if stride > 1 or in_channels != out_channels:
            # a kernel of exactly `stride` frames stacks each group: no cache, no look-ahead beyond the group
            self.residual = CausalConv1d(in_channels, out_channels, kernel_size=stride, stride=stride)
            self.residual_norm = nn.LayerNorm(out_channels)
        self.dropout = Dropout(dropout)

    def init_state(self, batch_size: int, device: torch.device) -> State:
        state: Dict[str, Any] = {"convs": [layer.depthwise.init_cache(batch_size, device) for layer in self.layers],
                                 "se": self.se.init_state(batch_size, device)}
        if self.residual is not None:
            state["residual"] = self.residual.init_cache(batch_size, device)
        return state

    def forward(self, x: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        h = x
        caches: List[torch.Tensor] = []
        for layer, cache in zip(self.layers, state["convs"]):
            h, cache = layer(h, cache)
            caches.append(cache)
        h, se_state = self.se(h, state["se"])
        new_state: Dict[str, Any] = {"convs": caches, "se": se_state}
        if self.residual is None:
            residual = x
        else:
            residual, new_state["residual"] = self.residual.forward_time_major(x, state["residual"])
            residual = self.residual_norm(residual)
        return nn.functional.silu(self.dropout(h) + residual), new_state


@register_encoder("contextnet")
class ContextNetEncoder(EncoderBase):
    """Causal ContextNet: depthwise-separable conv blocks with running-mean SE; time / 4 by two strided blocks."""

    def __init__(
        self,
        num_features: int,
        output_dim: int = 256,
        channels: int = 256,
        num_blocks: int = 14,
        layers_per_block: int = 5,
        kernel_size: int = 5,
        stride_blocks: Sequence[int] = (1, 2),
        se_reduction: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        strides = [2 if i in set(stride_blocks) else 1 for i in range(num_blocks)]
        if len(stride_blocks) != 2 or 0 in stride_blocks or max(stride_blocks) >= num_blocks:
            raise ValueError(f"stride_blocks must name two blocks in 1..{num_blocks - 1} (time / 4), "
                             f"got {stride_blocks}")
        self.subsampling_factor = 4
        self.look_ahead = self.subsampling_factor - 1
        self.chunk_multiple = self.subsampling_factor
        self.output_dim = output_dim
        # block 0 is ContextNet's C0: a single conv layer lifting the features to `channels`
        self.blocks = nn.ModuleList(
            ContextNetBlock(num_features if i == 0 else channels, channels, 1 if i == 0 else layers_per_block,
                            kernel_size, strides[i], se_reduction, dropout)
            for i in range(num_blocks))
        self.out = Linear(channels, output_dim)

    def init_state(self, batch_size: int, device: torch.device) -> List[State]:
        return [b.init_state(batch_size, device) for b in self.blocks]

    def _encode(self, x: torch.Tensor, state: List[State]) -> Tuple[torch.Tensor, List[State]]:
        h = x
        new_state = []
        for block, block_state in zip(self.blocks, state):
            h, block_state = block(h, block_state)
            new_state.append(block_state)
        return self.out(h), new_state

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # Everything is causal, so padding after an utterance's end cannot reach its valid frames.
        x = x[:, : x.size(1) // self.subsampling_factor * self.subsampling_factor]
        y, _ = self._encode(x, self.init_state(x.size(0), x.device))
        return y, torch.div(x_lens, self.subsampling_factor, rounding_mode="floor")

    def streaming_forward(self, x: torch.Tensor, state: List[State]) -> Tuple[torch.Tensor, List[State]]:
        check_chunk(x, self.chunk_multiple, type(self).__name__)
        return self._encode(x, state)
