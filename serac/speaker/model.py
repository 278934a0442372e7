"""A small ECAPA-TDNN speaker-embedding model and the additive-margin softmax heads that train it.

ECAPA-TDNN (Desplanques et al., Interspeech 2020), shrunk for a 2-core CPU (documented in
docs/speaker-verification.md; default sizes in brackets, the original's in parentheses):

- input: log-mel fbank (B, T, F) with per-utterance mean normalisation over time;
- a Conv1d(F -> C, kernel 5) + ReLU + BatchNorm front layer, C = ``channels`` [64] (512 / 1024);
- ``len(dilations)`` [3] SE-Res2Net blocks with dilations [2, 3, 4]: 1x1 conv, a Res2Net conv (the channels split
  into ``scale`` [4] groups, group g convolved (kernel 3, dilation d) after adding group g-1's output: a
  hierarchy of receptive fields within the block), 1x1 conv, a squeeze-excitation gate (bottleneck
  ``se_channels`` [32] (128)), and a residual connection;
- multi-layer feature aggregation: the blocks' outputs concatenated, then a 1x1 conv to ``mfa_channels`` [192]
  (1536);
- attentive statistics pooling with global context: each frame's attention weights (per channel) come from the
  frame and from the utterance's mean and std; the weighted mean and std are concatenated (2 x mfa);
- BatchNorm, a linear layer to the ``embedding_dim`` [128] (192) embedding, BatchNorm.

Trained with an additive-margin softmax over the training speakers (:class:`MarginSoftmax`): AM-softmax
``s * (cos(theta_y) - m)`` (Wang et al. 2018) or AAM-softmax ``s * cos(theta_y + m)`` (ArcFace, Deng et al. 2019).
Verification scores are cosine similarities of the (unit-normalised) embeddings.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODEL_DEFAULTS: Dict[str, Any] = {
    "num_mel_bins": 80,
    "channels": 64,
    "scale": 4,
    "dilations": [2, 3, 4],
    "se_channels": 32,
    "mfa_channels": 192,
    "attention_channels": 64,
    "embedding_dim": 128,
}


class _TdnnLayer(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__(nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2),
                         nn.ReLU(), nn.BatchNorm1d(cout))


class Res2NetConv(nn.Module):
    """Channels split into ``scale`` groups; group g (g >= 1) is convolved after adding group g-1's output."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} must be a multiple of scale {scale}")
        width = channels // scale
        self.scale = scale
        self.convs = nn.ModuleList(_TdnnLayer(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: Tensor) -> Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        out = [groups[0]]  # the first group passes through unchanged
        prev: Optional[Tensor] = None
        for g, conv in enumerate(self.convs, start=1):
            prev = conv(groups[g] if prev is None else groups[g] + prev)
            out.append(prev)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Conv1d(channels, bottleneck, 1)
        self.up = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=2, keepdim=True)
        return x * torch.sigmoid(self.up(F.relu(self.down(s))))


class SERes2NetBlock(nn.Module):
    def __init__(self, channels: int, scale: int, dilation: int, se_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_TdnnLayer(channels, channels), Res2NetConv(channels, scale, 3, dilation),
                                  _TdnnLayer(channels, channels), SqueezeExcitation(channels, se_channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class AttentiveStatsPooling(nn.Module):
    """Channel- and context-dependent attentive statistics pooling (ECAPA-TDNN's)."""

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(3 * channels, attention_channels, 1), nn.ReLU(),
                                       nn.BatchNorm1d(attention_channels), nn.Tanh(),
                                       nn.Conv1d(attention_channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, 2C)
        t = x.shape[2]
        mean = x.mean(dim=2, keepdim=True)
        std = x.var(dim=2, keepdim=True, unbiased=False).clamp_min(1e-5).sqrt()
        context = torch.cat([x, mean.expand(-1, -1, t), std.expand(-1, -1, t)], dim=1)
        alpha = torch.softmax(self.attention(context), dim=2)
        mu = (alpha * x).sum(dim=2)
        sigma = ((alpha * x * x).sum(dim=2) - mu * mu).clamp_min(1e-5).sqrt()
        return torch.cat([mu, sigma], dim=1)


class EcapaTdnn(nn.Module):
    """Fbank (B, T, F) -> speaker embeddings (B, embedding_dim). See the module docstring."""

    def __init__(self, num_mel_bins: int = 80, channels: int = 64, scale: int = 4,
                 dilations: Sequence[int] = (2, 3, 4), se_channels: int = 32, mfa_channels: int = 192,
                 attention_channels: int = 64, embedding_dim: int = 128) -> None:
        super().__init__()
        self.config = {"num_mel_bins": num_mel_bins, "channels": channels, "scale": scale,
                       "dilations": list(dilations), "se_channels": se_channels, "mfa_channels": mfa_channels,
                       "attention_channels": attention_channels, "embedding_dim": embedding_dim}
        self.front = _TdnnLayer(num_mel_bins, channels, kernel=5)
        self.blocks = nn.ModuleList(SERes2NetBlock(channels, scale, d, se_channels) for d in dilations)
        self.mfa = _TdnnLayer(channels * len(dilations), mfa_channels)
        self.pooling = AttentiveStatsPooling(mfa_channels, attention_channels)
        self.pool_norm = nn.BatchNorm1d(2 * mfa_channels)
        self.embedding = nn.Linear(2 * mfa_channels, embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim)

    @property
    def embedding_dim(self) -> int:
        return self.config["embedding_dim"]

    def forward(self, feats: Tensor) -> Tensor:
        if feats.dim() != 3 or feats.shape[2] != self.config["num_mel_bins"]:
            raise ValueError(f"expected fbank (batch, frames, {self.config['num_mel_bins']}), "
                             f"got {tuple(feats.shape)}")
        x = (feats - feats.mean(dim=1, keepdim=True)).transpose(1, 2)
        x = self.front(x)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1))
        x = self.pool_norm(self.pooling(x))
        return self.embedding_norm(self.embedding(x))


class MarginSoftmax(nn.Module):
    """Additive-margin softmax over ``num_classes`` speakers; ``forward`` returns per-sample losses (B,).

    ``kind="am"``: logit of the true class ``s (cos - m)``; ``kind="aam"``: ``s cos(theta + m)`` (with the usual
    fallback ``cos - m sin(m)`` beyond ``theta > pi - m`` to keep it monotonic).
    """

    def __init__(self, embedding_dim: int, num_classes: int, kind: str = "am", margin: float = 0.2,
                 scale: float = 30.0) -> None:
        super().__init__()
        if kind not in ("am", "aam"):
            raise ValueError(f"margin softmax kind must be 'am' or 'aam', got {kind!r}")
        self.kind, self.margin, self.scale = kind, margin, scale
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1)).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, labels[:, None])
        if self.kind == "am":
            adjusted = target - self.margin
        else:
            theta = torch.acos(target)
            adjusted = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin),
                                   target - self.margin * math.sin(self.margin))
        logits = cos.scatter(1, labels[:, None], adjusted) * self.scale
        return F.cross_entropy(logits, labels, reduction="none")


def build_model(config: Dict[str, Any]) -> EcapaTdnn:
    unknown = set(config) - set(MODEL_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown speaker-model options {sorted(unknown)}; known: {sorted(MODEL_DEFAULTS)}")
    return EcapaTdnn(**{**MODEL_DEFAULTS, **config})


def load_checkpoint(path: str, map_location: str = "cpu") -> "tuple[EcapaTdnn, Dict[str, Any]]":
    """(model in eval mode, checkpoint dict) from a checkpoint written by :mod:`serac.speaker.train`."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a serac speaker-embedding checkpoint (no model_config/model)")
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt
