"""The separator-transducer-segmenter (STS, Sklyar et al. 2022): a mixture encoder, a separator with two tied
branches, and one shared transducer that decodes each branch.

    mixture features -> mixture encoder (any serac encoder; shared)            (B, T', D)
                     -> separator: the same causal LSTM run once per channel c on
                        (mixture encoding + learned embedding of c)              (B*C, T', S)   tied branches
                     -> optionally (residual) the mixture encoding + a projection of that
                     -> encoder tail (any serac encoder, no further subsampling;
                        optional)                                                (B*C, T', E)
                     -> serac's Transducer (stateless decoder + joiner) on every row

:class:`SeparatorEncoder` is the first three steps behind the :class:`~serac.encoders.EncoderBase` contract, with
one difference: it returns ``num_output_channels`` rows per input utterance (row ``b * C + c`` is channel ``c`` of
utterance ``b``). Wrapped in serac's :class:`~serac.transducer.model.Transducer`, the loss over those rows is the
sum over channels of the pruned RNN-T loss, and greedy / beam search decode each channel as an utterance.

Two switchable training terms act on the transducer lattice through ``px_hook`` (the (B, S, T) log-probs of
emitting target symbol s at frame t):

- **FastEmit** (Yu et al. 2021): the gradient through the label-emission log-probs is scaled by ``1 + lambda``
  (blank transitions unchanged), which is FastEmit's regularised gradient; the loss value is unchanged.
- **end-of-turn latency penalty** (STS): emitting a turn's ``<eot>`` at encoder frame t costs
  ``eot_penalty * max(0, t - (end + eot_tolerance_frames))`` in log-probability, ``end`` being the reference turn
  end in encoder frames, so alignments that close a turn late lose weight and the model learns to close turns
  promptly. Only ``<eot>`` symbols are penalised; other symbols, and ``<eot>`` on time, are untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from serac.encoders import EncoderBase, build_encoder
from serac.multitalker.targets import ChannelTarget
from serac.transducer.loss import feasible_earliest, restrict_emissions
from serac.transducer.model import Transducer


class SeparatorEncoder(EncoderBase):
    """Mixture encoder + tied-branch separator + shared encoder tail (module docstring)."""

    def __init__(self, num_features: int, mixture_encoder: Dict[str, Any], tail_encoder: Optional[Dict[str, Any]],
                 num_channels: int = 2, separator_dim: int = 128, separator_layers: int = 1,
                 residual: bool = False, activity_head: bool = False) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_output_channels = num_channels
        self.mixture = build_encoder(num_features, mixture_encoder)
        self.channel_embedding = nn.Embedding(num_channels, self.mixture.output_dim)
        self.separator = nn.LSTM(self.mixture.output_dim, separator_dim, num_layers=separator_layers,
                                 batch_first=True)
        # residual: each channel is the mixture encoding plus a zero-initialised projection of the separator's
        # output, so a model whose mixture encoder (and decoder, joiner) come from a single-talker model starts as
        # that model on every channel and learns what to take away (docs/sts.md: initialising from a single-talker
        # model); without it the fresh separator and tail hide the loaded encoder behind random layers
        self.residual_proj = None
        if residual:
            self.residual_proj = nn.Linear(separator_dim, self.mixture.output_dim)
            nn.init.zeros_(self.residual_proj.weight)
            nn.init.zeros_(self.residual_proj.bias)
        channel_dim = self.mixture.output_dim if residual else separator_dim
        self.tail = None if tail_encoder is None else build_encoder(channel_dim, tail_encoder)
        if self.tail is not None and self.tail.subsampling_factor != 1:
            raise ValueError(f"the STS encoder tail works on the mixture encoder's frames: its subsampling_factor "
                             f"must be 1, got {self.tail.subsampling_factor}")
        m = self.mixture
        self.subsampling_factor = m.subsampling_factor
        if self.tail is None:
            self.look_ahead, self.chunk_multiple, self.output_dim = m.look_ahead, m.chunk_multiple, channel_dim
        else:
            self.look_ahead = m.look_ahead + self.tail.look_ahead * m.subsampling_factor
            tail_multiple = self.tail.chunk_multiple * m.subsampling_factor
            self.chunk_multiple = m.chunk_multiple * tail_multiple // _gcd(m.chunk_multiple, tail_multiple)
            self.output_dim = self.tail.output_dim
        # speech activity of each channel's talker, predicted from the channel's encoding (the paper's multi-task
        # signal, sts.activity_scale): training only, decoding never reads it
        self.activity = nn.Linear(self.output_dim, 1) if activity_head else None

    def _separate(self, h: torch.Tensor, sep_state: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        """(B, T', D) mixture encoding -> (B*C, T', S) channel streams: one shared LSTM, the channel told by the
        added embedding (tied branches); with ``residual``, (B*C, T', D) mixture encoding + projected stream."""
        c = self.num_output_channels
        channels = torch.arange(c, device=h.device).repeat(h.size(0))          # b * C + c -> c
        mixture = h.repeat_interleave(c, dim=0)
        sep, state = self.separator(mixture + self.channel_embedding(channels).unsqueeze(1), sep_state)
        if self.residual_proj is not None:
            sep = mixture + self.residual_proj(sep)
        return sep, state

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, lens = self.mixture(x, x_lens)
        sep, _ = self._separate(h, None)
        lens = lens.repeat_interleave(self.num_output_channels)
        return (sep, lens) if self.tail is None else self.tail(sep, lens)

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Any]:
        rows = batch_size * self.num_output_channels
        shape = (rows, self.separator.num_layers, self.separator.hidden_size)
        return {"mixture": self.mixture.init_state(batch_size, device), "sep_h": torch.zeros(shape, device=device),
                "sep_c": torch.zeros(shape, device=device),
                "tail": None if self.tail is None else self.tail.init_state(rows, device)}

    def _stream(self, x: torch.Tensor, state: Dict[str, Any], final: bool) -> Tuple[torch.Tensor, Dict[str, Any]]:
        step = self.mixture.streaming_forward_final if final else self.mixture.streaming_forward
        h, mixture_state = step(x, state["mixture"])
        sep_state = (state["sep_h"].transpose(0, 1).contiguous(), state["sep_c"].transpose(0, 1).contiguous())
        sep, (sep_h, sep_c) = self._separate(h, sep_state)
        if self.tail is None:
            y, tail_state = sep, None
        else:
            tail_step = self.tail.streaming_forward_final if final else self.tail.streaming_forward
            y, tail_state = tail_step(sep, state["tail"])
        return y, {"mixture": mixture_state, "sep_h": sep_h.transpose(0, 1), "sep_c": sep_c.transpose(0, 1),
                   "tail": tail_state}

    def streaming_forward(self, x: torch.Tensor, state: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        return self._stream(x, state, final=False)

    def streaming_forward_final(self, x: torch.Tensor, state: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        return self._stream(x, state, final=True)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def build_sts_model(model_cfg: Dict[str, Any], num_features: int, vocab_size: int, blank_id: int = 0) -> Transducer:
    """A Transducer whose encoder is a :class:`SeparatorEncoder`, from a config section
    ``{separator: {mixture_encoder: {...}, tail_encoder: {...}, num_channels, separator_dim, separator_layers},
    decoder_dim, joiner_dim, context_size}``."""
    cfg = dict(model_cfg)
    if "separator" not in cfg:
        raise ValueError("an STS model config needs a 'separator' section (mixture_encoder, tail_encoder, ...)")
    encoder = SeparatorEncoder(num_features, **cfg.pop("separator"))
    allowed = {"decoder_dim", "joiner_dim", "context_size", "ctc_head"}
    unknown = set(cfg) - allowed
    if unknown:
        raise ValueError(f"unknown STS model options {sorted(unknown)}; allowed: {sorted(allowed)} and 'separator'")
    return Transducer(encoder, vocab_size=vocab_size, blank_id=blank_id, **cfg)


@dataclass
class TurnLossConfig:
    """The switchable STS training terms (module docstring); 0 switches a term off."""

    fastemit_lambda: float = 0.0
    eot_penalty: float = 0.0          #: log-prob per encoder frame of <eot> emitted after the reference turn end
    eot_tolerance_frames: int = 0     #: frames after the reference end that cost nothing
    #: no token of a turn may be emitted more than this many encoder frames before the turn's reference start
    #: (None: unrestricted). The multi-talker counterpart of ``loss.onset_margin``: without it a small model learns
    #: to emit its likeliest opening tokens at frame 0 on both channels before hearing anything (measured here).
    start_margin_frames: Optional[int] = None
    #: weight of the speech-activity term: per channel and encoder frame, the binary cross-entropy of the
    #: encoder's activity head (``separator.activity_head``) against "a turn of this channel is under way"
    activity_scale: float = 0.0


def fastemit(px: torch.Tensor, lam: float) -> torch.Tensor:
    """``px`` with its gradient scaled by ``1 + lam`` (the value unchanged; -inf entries left alone)."""
    finite = torch.isfinite(px)
    scaled = px + lam * (px - px.detach()).masked_fill(~finite, 0.0)
    return torch.where(finite, scaled, px)


def eot_late_penalty(px: torch.Tensor, eot_end_frame: torch.Tensor, penalty: float, tolerance: int = 0) -> torch.Tensor:
    """Subtract ``penalty * max(0, t - end - tolerance)`` from the log-prob of emitting symbol s at frame t,
    for the symbols whose ``eot_end_frame[b, s] >= 0`` (the ``<eot>`` s; -1 elsewhere)."""
    t = torch.arange(px.size(2), device=px.device).view(1, 1, -1)
    end = eot_end_frame.to(px.device).unsqueeze(2)
    late = (t - end - tolerance).clamp(min=0).to(px.dtype)
    return px - penalty * late * (end >= 0).to(px.dtype)


def turn_px_hook(config: TurnLossConfig, eot_end_frame: Optional[torch.Tensor],
                 earliest: Optional[torch.Tensor] = None) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The ``px_hook`` for :meth:`Transducer.forward` that applies the switched-on terms (None when none is):
    ``earliest`` (rows, S), the first frame each symbol may be emitted at (``start_margin_frames``), then the
    end-of-turn penalty, then FastEmit."""
    use_penalty = config.eot_penalty > 0 and eot_end_frame is not None
    if config.fastemit_lambda <= 0 and not use_penalty and earliest is None:
        return None

    def hook(px: torch.Tensor) -> torch.Tensor:
        if earliest is not None:
            px = restrict_emissions(px, earliest.to(px.device))
        if use_penalty:
            px = eot_late_penalty(px, eot_end_frame, config.eot_penalty, config.eot_tolerance_frames)
        if config.fastemit_lambda > 0:
            px = fastemit(px, config.fastemit_lambda)
        return px

    return hook


def flatten_channel_targets(batch_targets: Sequence[Sequence[ChannelTarget]], frame_shift_s: float,
                            subsampling_factor: int) -> Tuple[List[List[int]], torch.Tensor]:
    """Per-row token lists (row ``b * C + c``, as :class:`SeparatorEncoder` orders its output) and the (rows, S)
    reference end frame (encoder frames) of each ``<eot>`` symbol, -1 for every other symbol."""
    rows = [target for conv in batch_targets for target in conv]
    tokens = [list(t.tokens) for t in rows]
    s_max = max((len(t) for t in tokens), default=0)
    end_frame = torch.full((len(rows), max(s_max, 1)), -1, dtype=torch.long)
    frame_s = frame_shift_s * subsampling_factor
    for r, target in enumerate(rows):
        for k, pos in enumerate(target.eot_index):
            end_frame[r, pos] = int(target.turn_end_s[k] / frame_s)
    return tokens, end_frame[:, :s_max]


def turn_start_earliest(batch_targets: Sequence[Sequence[ChannelTarget]], frame_shift_s: float,
                        subsampling_factor: int, margin: int, encoder_frames: torch.Tensor) -> torch.Tensor:
    """(rows, S) first encoder frame each symbol may be emitted at: its turn's reference start minus ``margin``
    frames (0 for padding), relaxed (by :func:`serac.transducer.loss.feasible_earliest`) where a row's symbols
    could not all fit, one per frame, before ``encoder_frames`` (per conversation) end."""
    rows = [target for conv in batch_targets for target in conv]
    s_max = max((len(t.tokens) for t in rows), default=0)
    earliest = torch.zeros((len(rows), max(s_max, 1)), dtype=torch.long)
    frame_s = frame_shift_s * subsampling_factor
    for r, target in enumerate(rows):
        for pos, k in enumerate(target.token_turn):
            earliest[r, pos] = max(0, int(target.turn_start_s[k] / frame_s) - int(margin))
    channels = len(batch_targets[0]) if batch_targets else 1
    lens = encoder_frames.repeat_interleave(channels)
    y_lens = torch.tensor([len(t.tokens) for t in rows], dtype=torch.long)
    return feasible_earliest(earliest[:, :s_max], lens, y_lens)


def channel_activity(batch_targets: Sequence[Sequence[ChannelTarget]], frame_shift_s: float,
                     subsampling_factor: int, num_frames: int) -> torch.Tensor:
    """(rows, num_frames) 0/1 speech activity per channel row (``b * C + c``) and encoder frame: 1 where the frame's
    centre lies inside one of the channel's reference turns."""
    rows = [target for conv in batch_targets for target in conv]
    frame_s = frame_shift_s * subsampling_factor
    centre = (torch.arange(num_frames, dtype=torch.float64) + 0.5) * frame_s
    active = torch.zeros((len(rows), num_frames))
    for r, target in enumerate(rows):
        for start, end in zip(target.turn_start_s, target.turn_end_s):
            active[r] = torch.maximum(active[r], ((centre >= start) & (centre < end)).to(active.dtype))
    return active


def activity_loss(encoder: SeparatorEncoder, encoder_out: torch.Tensor, encoder_lens: torch.Tensor,
                  active: torch.Tensor) -> torch.Tensor:
    """Sum over rows and valid frames of the binary cross-entropy of the encoder's activity head on
    ``encoder_out`` (rows, T, E) against ``active`` (rows, T) (:func:`channel_activity`)."""
    if encoder.activity is None:
        raise ValueError("sts.activity_scale > 0 needs an activity head: set model.separator.activity_head: true")
    logits = encoder.activity(encoder_out).squeeze(-1)
    t = torch.arange(logits.size(1), device=logits.device)
    valid = (t.unsqueeze(0) < encoder_lens.to(logits.device).unsqueeze(1)).to(logits.dtype)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, active.to(logits), reduction="none")
    return (bce * valid).sum()


def weighted_activity_loss(config: TurnLossConfig, encoder: SeparatorEncoder, out: Dict[str, torch.Tensor],
                           batch_targets: Sequence[Sequence[ChannelTarget]], frame_shift_s: float,
                           subsampling_factor: int) -> torch.Tensor:
    """``config.activity_scale`` x :func:`activity_loss` of a forward output (``encoder_out``, ``encoder_lens``)
    against the channel activity of ``batch_targets``: the term :func:`sts_loss` and the trainer add."""
    enc, lens = out["encoder_out"], out["encoder_lens"]
    active = channel_activity(batch_targets, frame_shift_s, subsampling_factor, enc.size(1))
    return config.activity_scale * activity_loss(encoder, enc, lens, active)


def sts_loss(model: Transducer, x: torch.Tensor, x_lens: torch.Tensor,
             batch_targets: Sequence[Sequence[ChannelTarget]], config: TurnLossConfig, frame_shift_s: float = 0.01,
             **loss_kwargs: Any) -> Dict[str, torch.Tensor]:
    """The transducer losses summed over every conversation's channels, with the switched-on STS terms (and
    ``activity_loss``, weighted, when ``config.activity_scale`` is on); ``loss_kwargs`` go to
    :meth:`Transducer.forward` (prune_range, lm_scale, ...)."""
    channels = getattr(model.encoder, "num_output_channels", None)
    if channels is None:
        raise ValueError("sts_loss needs a model whose encoder is a SeparatorEncoder (build_sts_model)")
    for b, conv in enumerate(batch_targets):
        if len(conv) != channels:
            raise ValueError(f"batch item {b}: {len(conv)} channel targets, the model has {channels} channels")
    factor = model.encoder.subsampling_factor
    tokens, end_frame = flatten_channel_targets(batch_targets, frame_shift_s, factor)
    earliest = None
    if config.start_margin_frames is not None:
        earliest = turn_start_earliest(batch_targets, frame_shift_s, factor, config.start_margin_frames,
                                       x_lens.cpu() // factor)
    hook = turn_px_hook(config, end_frame, earliest)
    out = model(x, x_lens, tokens, px_hook=hook, **loss_kwargs)
    if config.activity_scale > 0:
        out["activity_loss"] = weighted_activity_loss(config, model.encoder, out, batch_targets, frame_shift_s, factor)
    return out
