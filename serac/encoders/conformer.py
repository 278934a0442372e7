"""Streaming Conformer encoder: causal convolutional subsampling, then Conformer blocks whose self-attention
is chunked and whose convolution module is causal, so the whole encoder streams exactly.

Architecture (defaults in brackets)::

    fbank (N, T, 80) -> causal 2-D conv subsampling (time / 4, [144] channels) -> linear [144]
      -> [9] x Conformer block:
           x + 1/2 FFN(x)                          FFN: LayerNorm -> linear [576] -> Swish -> linear
           x + ChunkedMHSA(LayerNorm(x))           [4] heads, chunk [4] frames, left context [64] frames
           x + ConvModule(x)                       LayerNorm -> pointwise -> GLU -> causal depthwise
                                                   conv (kernel [15]) -> LayerNorm -> Swish -> pointwise
           x + 1/2 FFN(x) -> LayerNorm
      -> linear (output_dim [256]) at 25 frames/s

Chunked attention: output frames are cut into chunks of ``chunk_size`` frames aligned to the stream
start; a frame attends to every frame of its own chunk (hence its look-ahead) and to the ``left_context``
frames before its chunk. There is no absolute positional encoding (it would not stream past its table):
the causal convolution modules carry order and a learned per-head relative-position bias inside the
attention window gives attention its own sense of distance. LayerNorm replaces the Conformer's BatchNorm,
whose training statistics would mix padding and future frames into every frame.

Streaming (shared with every chunked-attention encoder: :mod:`serac.encoders.chunked_attention`):
``chunk_multiple = 4 * chunk_size`` input frames; ``look_ahead = 4 * chunk_size - 1`` input frames (the first
frame of a chunk waits for the chunk's end); a stream may end inside a chunk. The state carries the two subsampling
convolutions' caches, and per block the last ``left_context`` keys/values (with which slots hold real
frames) and the depthwise convolution's last ``kernel-1`` frames. In ``forward`` keys beyond ``x_lens``
are masked, so padding cannot reach the frames before it even inside their chunk.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from serac.encoders import register_encoder
from serac.encoders.cpu_ops import Dropout, Linear
from serac.encoders.streaming import CausalConv1d, CausalConv2dSubsampling, ChunkedSelfAttention, State
from serac.encoders.chunked_attention import ChunkedAttentionEncoder


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), Linear(dim, hidden_dim), nn.SiLU(), Dropout(dropout),
                                 Linear(hidden_dim, dim), Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CausalConvModule(nn.Module):
    """Conformer convolution module with a causal depthwise convolution (cache: last kernel-1 frames)."""

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.pointwise_in = Linear(dim, 2 * dim)
        self.depthwise = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm_mid = nn.LayerNorm(dim)
        self.pointwise_out = Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = nn.functional.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        h, cache = self.depthwise.forward_time_major(h, cache)
        h = self.pointwise_out(nn.functional.silu(self.norm_mid(h)))
        return self.dropout(h), cache


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int, conv_kernel_size: int, chunk_size: int,
                 left_context: int, dropout: float) -> None:
        super().__init__()
        self.ffn1 = FeedForward(dim, ffn_dim, dropout)
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = ChunkedSelfAttention(dim, num_heads, chunk_size, left_context, dropout)
        self.dropout = Dropout(dropout)
        self.conv = CausalConvModule(dim, conv_kernel_size, dropout)
        self.ffn2 = FeedForward(dim, ffn_dim, dropout)
        self.norm_out = nn.LayerNorm(dim)

    def init_state(self, batch_size: int, device: torch.device) -> State:
        return {"attn": self.attn.init_state(batch_size, device),
                "conv": self.conv.depthwise.init_cache(batch_size, device)}

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        x = x + 0.5 * self.ffn1(x)
        attn_out, attn_state = self.attn(self.norm_attn(x), key_valid, state["attn"])
        x = x + self.dropout(attn_out)
        conv_out, conv_cache = self.conv(x, state["conv"])
        x = x + conv_out
        x = self.norm_out(x + 0.5 * self.ffn2(x))
        return x, {"attn": attn_state, "conv": conv_cache}


@register_encoder("conformer")
class ConformerEncoder(ChunkedAttentionEncoder):
    """Streaming Conformer with chunked attention (chunk_size / left_context in output frames)."""

    def __init__(
        self,
        num_features: int,
        output_dim: int = 256,
        dim: int = 144,
        num_layers: int = 9,
        num_heads: int = 4,
        ffn_dim: int = 576,
        conv_kernel_size: int = 15,
        subsampling_channels: int = 144,
        chunk_size: int = 4,
        left_context: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self._set_chunking(chunk_size, left_context)
        self.output_dim = output_dim
        self.subsampling = CausalConv2dSubsampling(num_features, subsampling_channels, dim)
        self.dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, num_heads, ffn_dim, conv_kernel_size, chunk_size, left_context, dropout)
            for _ in range(num_layers))
        self.out = Linear(dim, output_dim)
