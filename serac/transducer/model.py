"""Transducer = encoder + stateless decoder + joiner, trained with the pruned RNN-T loss.

The stateless decoder (Ghodsi et al. 2020, as in icefall's pruned_transducer_stateless) embeds the last
``context_size`` tokens and mixes them with a depthwise Conv1d: a bounded context makes beam search cheap
and hypotheses with the same recent tokens share decoder outputs.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from serac.encoders import EncoderBase, build_encoder
from serac.encoders.cost import count_parameters  # noqa: F401  (re-exported for the trainer)
from serac.transducer.loss import (batch_segments, ctc_forced_alignment, feasible_windows, pruned_rnnt_loss,
                                   speech_onset, word_windows)


class StatelessDecoder(nn.Module):
    def __init__(self, vocab_size: int, decoder_dim: int, blank_id: int = 0, context_size: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.context_size = context_size
        self.decoder_dim = decoder_dim
        # blank embeds to zeros, like the left padding of the first positions in training (icefall does the same)
        self.embedding = nn.Embedding(vocab_size, decoder_dim, padding_idx=blank_id)
        self.conv = (nn.Conv1d(decoder_dim, decoder_dim, kernel_size=context_size, groups=decoder_dim, bias=False)
                     if context_size > 1 else None)
        # dropout on the output (training only), as icefall's yesno transducer drops 40% of its decoder's embedding:
        # on a tiny corpus it keeps the joiner from memorising the training sentences through the token history
        self.dropout = nn.Dropout(dropout)

    def forward(self, y: torch.Tensor, need_pad: bool = True) -> torch.Tensor:
        """y: (N, U) token ids, left-padded with blanks by the caller. Returns (N, U, decoder_dim).
        With ``need_pad=False`` the input holds exactly ``context_size`` tokens per row and one frame is returned."""
        emb = self.embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1)
        if self.conv is not None:
            emb = emb.permute(0, 2, 1)
            if need_pad:
                emb = F.pad(emb, (self.context_size - 1, 0))
            emb = self.conv(emb).permute(0, 2, 1)
        return self.dropout(F.relu(emb))


class Joiner(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor, project_input: bool = True) -> torch.Tensor:
        if project_input:
            encoder_out = self.encoder_proj(encoder_out)
            decoder_out = self.decoder_proj(decoder_out)
        return self.output_linear(torch.tanh(encoder_out + decoder_out))


class Transducer(nn.Module):
    def __init__(self, encoder: EncoderBase, vocab_size: int, blank_id: int = 0, decoder_dim: int = 256,
                 joiner_dim: int = 256, context_size: int = 2, ctc_head: bool = False,
                 decoder_dropout: float = 0.0, cohort_embedding: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.decoder = StatelessDecoder(vocab_size, decoder_dim, blank_id, context_size, decoder_dropout)
        self.joiner = Joiner(encoder.output_dim, decoder_dim, joiner_dim, vocab_size)
        self.simple_am_proj = nn.Linear(encoder.output_dim, vocab_size)
        # Global mean/variance normalisation of the input features (as ESPnet's global_mvn), estimated from the
        # training data before training starts; fixed constants keep every encoder exactly streamable.
        self.register_buffer("feat_mean", torch.zeros(encoder_num_features(encoder)))
        self.register_buffer("feat_inv_std", torch.ones(encoder_num_features(encoder)))
        self.simple_lm_proj = nn.Linear(decoder_dim, vocab_size)
        # optional auxiliary CTC head on the encoder (as icefall's *_ctc recipes): it teaches the encoder to align
        # early, before the transducer has learned to use the acoustics rather than its own token history
        self.ctc_output = nn.Linear(encoder.output_dim, vocab_size) if ctc_head else None
        # optional cohort embedding (Dheram et al. 2022's mitigation for discovered cohorts): a learned vector per
        # cohort, projected to the feature dimension and added to every (normalised) input frame, the same as
        # concatenating it to the features before a linear front end. The projection starts at zero, so a model
        # fine-tuned from one without it starts exactly where that model was.
        self.cohort_key: Optional[str] = None
        self.cohort_names: List[str] = []
        if cohort_embedding:
            unknown = set(cohort_embedding) - {"key", "cohorts", "dim"}
            if unknown or not cohort_embedding.get("key") or not cohort_embedding.get("cohorts"):
                raise ValueError(f"model.cohort_embedding needs key (a cut attribute), cohorts (its values, in id "
                                 f"order) and optionally dim; got {sorted(cohort_embedding)}")
            self.cohort_key = str(cohort_embedding["key"])
            self.cohort_names = [str(c) for c in cohort_embedding["cohorts"]]
            dim = int(cohort_embedding.get("dim", 16))
            self.cohort_embed = nn.Embedding(len(self.cohort_names), dim)
            self.cohort_proj = nn.Linear(dim, encoder_num_features(encoder))
            nn.init.zeros_(self.cohort_proj.weight)
            nn.init.zeros_(self.cohort_proj.bias)
            self.register_load_state_dict_pre_hook(self._keep_new_cohort_parameters)

    @staticmethod
    def _keep_new_cohort_parameters(module: "Transducer", state_dict: Dict[str, Any], prefix: str, *_args) -> None:
        # fine-tuning from a model without the cohort embedding: its parameters keep their initialisation
        own = {k: v for k, v in module.state_dict().items() if k.startswith(("cohort_embed.", "cohort_proj."))}
        if not any(prefix + k in state_dict for k in own):
            for k, v in own.items():
                state_dict[prefix + k] = v.detach().clone()

    def cohort_ids(self, cuts: Sequence[Any]) -> torch.Tensor:
        """(N,) cohort ids of a batch's cuts: the ``cohort_key`` attribute of each cut's first supervision (its
        ``custom``) or of the cut. ValueError naming the cut when it has none or one the model does not know."""
        ids = []
        for cut in cuts:
            sup = cut.supervisions[0] if getattr(cut, "supervisions", None) else None
            value = ((getattr(sup, "custom", None) or {}).get(self.cohort_key) if sup is not None else None)
            if value is None:
                value = (getattr(cut, "custom", None) or {}).get(self.cohort_key)
            if value is None:
                raise ValueError(f"cut {cut.id}: no '{self.cohort_key}' attribute, which this model's cohort "
                                 f"embedding needs (label the cuts with their cohort)")
            if str(value) not in self.cohort_names:
                raise ValueError(f"cut {cut.id}: cohort '{value}' of '{self.cohort_key}' is not one the model knows "
                                 f"({', '.join(self.cohort_names)})")
            ids.append(self.cohort_names.index(str(value)))
        return torch.tensor(ids, dtype=torch.long)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(mean)
        self.feat_inv_std.copy_(1.0 / std.clamp(min=1e-3))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feat_mean) * self.feat_inv_std

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor, cohorts: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalise features and run the encoder: what decoding calls. A model with a cohort embedding needs
        ``cohorts`` (N,) ids (:meth:`cohort_ids`); one without refuses them."""
        x = self.normalize(x)
        if self.cohort_key is not None:
            if cohorts is None:
                raise ValueError(f"this model has a cohort embedding ('{self.cohort_key}'): pass each utterance's "
                                 f"cohort id (Transducer.cohort_ids)")
            x = x + self.cohort_proj(self.cohort_embed(cohorts.to(x.device))).unsqueeze(1)
        elif cohorts is not None:
            raise ValueError("cohort ids given to a model without a cohort embedding")
        return self.encoder(x, x_lens)

    def forward(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        y: List[List[int]],
        prune_range: int = 5,
        lm_scale: float = 0.25,
        am_scale: float = 0.0,
        rnnt_type: str = "modified",
        transducer: bool = True,
        ctc_align_margin: Optional[int] = None,
        onset_margin: Optional[int] = None,
        onset: Optional[torch.Tensor] = None,
        reduction: str = "sum",
        px_hook: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        delay_penalty: float = 0.0,
        word_margin: Optional[Tuple[int, int]] = None,
        segments: Optional[List[List[List[int]]]] = None,
        cohorts: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Returns the summed simple and pruned losses over the batch, the number of encoder frames, the
        encoder output and lengths (for distillation), and any auxiliary loss the encoder set (e.g. a
        compute-cost term). ``transducer=False`` skips the
        transducer losses (returned as zeros): the CTC-only warm-up. ``ctc_align_margin=m`` (needs the CTC
        head) forbids the transducer to emit a token more than ``m`` frames before the token's first frame in
        the CTC head's Viterbi alignment (alignment-restricted RNN-T, left side only). ``onset_margin=m`` forbids
        any emission more than ``m`` encoder frames before the speech onset (an energy detector on the raw
        features, :func:`serac.transducer.loss.speech_onset`); ``onset`` (B,) gives those onsets in input frames
        instead, e.g. found on the features before SpecAugment masked or warped them. ``reduction="none"``: the
        simple, pruned and CTC losses per utterance (B,) instead of summed (for per-utterance loss weights).
        ``px_hook``, ``delay_penalty``: see :func:`serac.transducer.loss.pruned_rnnt_loss`. ``word_margin=(a, b)``
        restricts each word to its own speech segment, from ``a`` encoder frames before it to ``b`` after its end,
        in utterances whose energy detector finds one segment per symbol (:func:`serac.transducer.loss.word_windows`);
        the segments are given as ``segments`` (input frames per utterance, found before SpecAugment) or found
        here on ``x``."""
        encoder_out, enc_lens = self.encode(x, x_lens, cohorts)
        device = x.device
        y_lens = torch.tensor([len(t) for t in y], dtype=torch.int64, device=device)
        s_max = int(y_lens.max()) if len(y) else 0
        symbols = torch.full((len(y), max(s_max, 1)), self.blank_id, dtype=torch.int64, device=device)
        for i, toks in enumerate(y):
            if toks:
                symbols[i, : len(toks)] = torch.tensor(toks, dtype=torch.int64, device=device)
        symbols = symbols[:, :s_max] if s_max > 0 else symbols[:, :0]
        log_probs = (self.ctc_output(encoder_out).log_softmax(-1).float() if self.ctc_output is not None
                     else None)
        earliest = None
        if transducer and ctc_align_margin is not None:
            if log_probs is None:
                raise ValueError("loss.ctc_align_margin needs model.ctc_head: true")
            first = ctc_forced_alignment(log_probs.detach(), enc_lens, symbols, y_lens, self.blank_id)
            earliest = (first - int(ctc_align_margin)).clamp(min=0)  # -1 (no alignment) -> 0: unrestricted
        if transducer and onset_margin is not None:
            factor = int(getattr(self.encoder, "subsampling_factor"))
            onset = speech_onset(x, x_lens) if onset is None else onset.to(device)
            onset = (onset // factor - int(onset_margin)).clamp(min=0)
            by_onset = onset.unsqueeze(1).expand(symbols.shape)
            earliest = by_onset if earliest is None else torch.maximum(earliest, by_onset)
        latest = None
        if transducer and word_margin is not None:
            before, after = (int(v) for v in word_margin)
            factor = int(getattr(self.encoder, "subsampling_factor"))
            segs = batch_segments(x, x_lens) if segments is None else segments
            w_early, latest = word_windows(segs, x_lens, y_lens, factor, before, after)
            earliest = w_early if earliest is None else torch.maximum(earliest, w_early)
        if earliest is not None:
            earliest, latest = feasible_windows(earliest, latest, enc_lens, y_lens)
        if not transducer:
            # zeros still connected to every transducer-only parameter, so DDP sees them all used
            zero = encoder_out.sum() * 0.0 + sum(p.sum() for m in (self.decoder, self.joiner, self.simple_am_proj,
                                                                   self.simple_lm_proj) for p in m.parameters()) * 0.0
            simple_loss = pruned_loss = zero if reduction == "sum" else zero.expand(len(y))
        else:
            simple_loss, pruned_loss = self._transducer_losses(encoder_out, enc_lens, symbols, y_lens, prune_range,
                                                               lm_scale, am_scale, rnnt_type, earliest, reduction,
                                                               px_hook, delay_penalty, latest)
        out = {"simple_loss": simple_loss, "pruned_loss": pruned_loss, "num_frames": enc_lens.sum(),
               "encoder_out": encoder_out, "encoder_lens": enc_lens}
        if log_probs is not None:
            out["ctc_loss"] = F.ctc_loss(log_probs.transpose(0, 1), symbols, enc_lens, y_lens, blank=self.blank_id,
                                         reduction="sum" if reduction == "sum" else "none", zero_infinity=True)
        aux = getattr(self.encoder, "aux_loss", None)
        if aux is not None:
            out["aux_loss"] = aux
        return out

    def _transducer_losses(self, encoder_out: torch.Tensor, enc_lens: torch.Tensor, symbols: torch.Tensor,
                           y_lens: torch.Tensor, prune_range: int, lm_scale: float, am_scale: float,
                           rnnt_type: str, earliest: Optional[torch.Tensor] = None,
                           reduction: str = "sum",
                           px_hook: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                           delay_penalty: float = 0.0,
                           latest: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        sos_y = F.pad(symbols, (1, 0), value=self.blank_id)  # blank acts as <sos>
        decoder_out = self.decoder(sos_y)
        return pruned_rnnt_loss(
            am=self.joiner.encoder_proj(encoder_out), lm=self.joiner.decoder_proj(decoder_out),
            simple_am=self.simple_am_proj(encoder_out), simple_lm=self.simple_lm_proj(decoder_out),
            joiner=self.joiner, symbols=symbols, x_lens=enc_lens, y_lens=y_lens, blank_id=self.blank_id,
            prune_range=prune_range, lm_scale=lm_scale, am_scale=am_scale, reduction=reduction,
            rnnt_type=rnnt_type, earliest=earliest, px_hook=px_hook, delay_penalty=delay_penalty, latest=latest)


def encoder_num_features(encoder: EncoderBase) -> int:
    return int(getattr(encoder, "num_features"))


def build_model(model_cfg: Dict[str, Any], num_features: int, vocab_size: int, blank_id: int = 0) -> Transducer:
    """Build a Transducer from the ``model`` section of a config: the one model registry training, decoding and
    export go through. A section with a ``separator`` builds the separator-transducer-segmenter (a Transducer whose
    encoder gives two channel rows per utterance; serac/multitalker/model.py), whose encoders live inside the
    separator section: an ``encoder`` section besides it is refused, unless it is the defaults' bare
    ``{name: lstm}``."""
    cfg = dict(model_cfg)
    if "separator" in cfg:
        from serac.multitalker.model import build_sts_model  # the multitalker package builds on this module

        encoder = cfg.pop("encoder", None)
        if encoder not in (None, {"name": "lstm"}):
            raise ValueError(f"model: an STS model (a 'separator' section) takes its encoders from "
                             f"separator.mixture_encoder / separator.tail_encoder; drop model.encoder ({encoder})")
        return build_sts_model(cfg, num_features=num_features, vocab_size=vocab_size, blank_id=blank_id)
    encoder = build_encoder(num_features, cfg.pop("encoder"))
    allowed = {"decoder_dim", "joiner_dim", "context_size", "ctc_head", "decoder_dropout", "cohort_embedding"}
    unknown = set(cfg) - allowed
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}; allowed: {sorted(allowed)} and 'encoder'")
    return Transducer(encoder, vocab_size=vocab_size, blank_id=blank_id, **cfg)

