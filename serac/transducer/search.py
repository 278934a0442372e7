"""Transducer decoding: batched greedy search, modified beam search (one symbol per frame, as icefall's
``modified_beam_search``), and streaming greedy search over encoder chunks.

All functions take encoder output (N, T, D) with lengths and return token-id lists (blank removed); asked, they
also give each token's emission frame (the encoder frame whose joiner call emitted it), which a multi-talker
model's turn tokens need (serac/multitalker/decode.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from serac.lm.ngram import NgramLm
from serac.transducer.model import Transducer


def _context(hyps: List[List[int]], context_size: int, blank_id: int, device: torch.device) -> torch.Tensor:
    rows = [([blank_id] * context_size + h)[-context_size:] for h in hyps]
    return torch.tensor(rows, dtype=torch.int64, device=device)


@torch.no_grad()
def greedy_search_batch(model: Transducer, encoder_out: torch.Tensor, encoder_lens: torch.Tensor,
                        max_sym_per_frame: int = 1, hyps: Optional[List[List[int]]] = None,
                        frames: Optional[List[List[int]]] = None, frame_offset: int = 0) -> List[List[int]]:
    """Greedy search for a batch; at most ``max_sym_per_frame`` non-blank symbols per encoder frame.
    ``hyps``: hypotheses to continue (extended in place), e.g. from the previous chunk of a stream. ``frames``:
    lists extended in place with each emitted token's encoder frame (``frame_offset`` + its index here)."""
    n, t_max, _ = encoder_out.shape
    blank, ctx = model.blank_id, model.decoder.context_size
    if hyps is None:
        hyps = [[] for _ in range(n)]
    if len(hyps) != n or (frames is not None and len(frames) != n):
        raise ValueError(f"{n} encoder rows but {len(hyps)} hypotheses"
                         + (f" and {len(frames)} frame lists" if frames is not None else ""))
    enc_proj = model.joiner.encoder_proj(encoder_out)
    dec_proj = model.joiner.decoder_proj(model.decoder(_context(hyps, ctx, blank, encoder_out.device), need_pad=False))
    for t in range(t_max):
        active = (encoder_lens > t).nonzero(as_tuple=True)[0]
        if active.numel() == 0:
            break
        for _ in range(max_sym_per_frame):
            logits = model.joiner(enc_proj[active, t].unsqueeze(1), dec_proj[active], project_input=False)
            tokens = logits.squeeze(1).argmax(dim=-1).tolist()
            emitted = [i for i, tok in zip(active.tolist(), tokens) if tok != blank]
            if not emitted:
                break
            for i, tok in zip(active.tolist(), tokens):
                if tok != blank:
                    hyps[i].append(tok)
                    if frames is not None:
                        frames[i].append(frame_offset + t)
            idx = torch.tensor(emitted, device=encoder_out.device)
            new_dec = model.decoder(_context([hyps[i] for i in emitted], ctx, blank, encoder_out.device),
                                    need_pad=False)
            dec_proj[idx] = model.joiner.decoder_proj(new_dec)
            active = idx
    return hyps


@dataclass
class Hypothesis:
    tokens: List[int]
    log_prob: float
    frames: List[int] = field(default_factory=list)  #: emission frame of each token


@torch.no_grad()
def modified_beam_search(model: Transducer, encoder_out: torch.Tensor, encoder_lens: torch.Tensor,
                         beam: int = 4, lm: Optional[NgramLm] = None, lm_scale: float = 0.0,
                         blank_penalty: float = 0.0, return_frames: bool = False):
    """Beam search with at most one symbol per frame; hypotheses with the same token sequence are merged
    (log-add of their probabilities). All hypotheses of all utterances are scored in one joiner call per frame.

    Shallow fusion with a token n-gram ``lm`` (over the model's tokens): each emitted token adds
    ``lm_scale * log p_lm(token | history)`` to its hypothesis' score, and the final choice adds
    ``lm_scale * log p_lm(</s> | history)``. Merged hypotheses share a token sequence, hence an LM score.
    ``blank_penalty`` is subtracted from the blank logit before the softmax (as icefall's ``--blank-penalty``):
    it counters the deletions an LM's per-token cost brings. ``return_frames``: (tokens, emission frames) per
    utterance instead of tokens (merged hypotheses keep the frames of the likelier one).
    """
    if lm is not None and lm.vocab_size != model.joiner.output_linear.out_features:
        raise ValueError(f"the LM has {lm.vocab_size} tokens, the model {model.joiner.output_linear.out_features}")
    fuse = lm is not None and lm_scale != 0.0
    n, t_max, _ = encoder_out.shape
    device = encoder_out.device
    blank, ctx = model.blank_id, model.decoder.context_size
    enc_proj = model.joiner.encoder_proj(encoder_out)
    beams: List[List[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in range(n)]
    cache: Dict[Tuple[int, ...], torch.Tensor] = {}

    def dec_out(hyps: List[List[int]]) -> torch.Tensor:
        keys = [tuple(([blank] * ctx + h)[-ctx:]) for h in hyps]
        missing = sorted({k for k in keys if k not in cache})
        if missing:
            outs = model.joiner.decoder_proj(
                model.decoder(torch.tensor(missing, dtype=torch.int64, device=device), need_pad=False)).squeeze(1)
            for k, o in zip(missing, outs):
                cache[k] = o
        return torch.stack([cache[k] for k in keys])

    for t in range(t_max):
        active = [i for i in range(n) if int(encoder_lens[i]) > t]
        if not active:
            break
        flat = [(i, h) for i in active for h in beams[i]]
        d = dec_out([h.tokens for _, h in flat])
        e = enc_proj[[i for i, _ in flat], t]
        logits = model.joiner(e, d, project_input=False)
        if blank_penalty:
            logits[:, blank] -= blank_penalty
        log_probs = logits.log_softmax(dim=-1)
        if fuse:
            lm_lp = torch.stack([lm.log_probs([lm.bos] + h.tokens)[:-1] for _, h in flat]).to(log_probs)
            lm_lp[:, blank] = 0.0
            log_probs = log_probs + lm_scale * lm_lp
        log_probs = log_probs + torch.tensor([h.log_prob for _, h in flat], device=device).unsqueeze(1)
        vocab = log_probs.size(1)
        start = 0
        for i in active:
            k = len(beams[i])
            scores = log_probs[start : start + k].reshape(-1)
            start += k
            top_vals, top_idx = scores.topk(min(beam, scores.numel()))
            merged: Dict[Tuple[int, ...], Hypothesis] = {}
            for val, idx in zip(top_vals.tolist(), top_idx.tolist()):
                h = beams[i][idx // vocab]
                tok = idx % vocab
                tokens = h.tokens if tok == blank else h.tokens + [tok]
                key = tuple(tokens)
                if key in merged:
                    old = merged[key].log_prob
                    merged[key].log_prob = max(old, val) + math.log1p(math.exp(-abs(old - val)))
                else:
                    merged[key] = Hypothesis(tokens, val, h.frames if tok == blank else h.frames + [t])
            beams[i] = list(merged.values())
    if fuse:
        def final(h: Hypothesis) -> float:
            return h.log_prob + lm_scale * lm.score([lm.bos] + h.tokens, lm.eos)
    else:
        def final(h: Hypothesis) -> float:
            return h.log_prob
    best = [max(b, key=final) for b in beams]
    return [(h.tokens, h.frames) for h in best] if return_frames else [h.tokens for h in best]


@dataclass
class StreamingGreedyState:
    """Carried between chunks: the encoder state, each output row's hypothesis and its tokens' emission frames,
    and how many encoder frames the streams have produced so far (what a latency measurement needs). A
    multi-channel encoder (STS) gives ``num_output_channels`` rows per stream: row ``b * C + c``."""
    encoder_state: object
    hyps: List[List[int]] = field(default_factory=list)
    num_encoder_frames: int = 0
    frames: List[List[int]] = field(default_factory=list)


@torch.no_grad()
def streaming_greedy_search(model: Transducer, chunk: torch.Tensor, state: Optional[StreamingGreedyState],
                            final: bool = False) -> StreamingGreedyState:
    """Feed one feature chunk (N, C, F) of a batch of streams through the streaming encoder and extend the
    greedy hypotheses (one symbol per frame, as :func:`greedy_search_batch` with its default).

    ``C`` must be a multiple of ``model.encoder.chunk_multiple``; with ``final=True`` (the end of the streams)
    any multiple of ``model.encoder.subsampling_factor`` (``forward`` drops a shorter tail the same way).
    """
    n = chunk.size(0)
    if state is None:
        rows = n * int(getattr(model.encoder, "num_output_channels", 1))
        state = StreamingGreedyState(model.encoder.init_state(n, chunk.device), [[] for _ in range(rows)],
                                     frames=[[] for _ in range(rows)])
    if chunk.size(1) == 0:
        return state
    step = model.encoder.streaming_forward_final if final else model.encoder.streaming_forward
    enc, state.encoder_state = step(model.normalize(chunk), state.encoder_state)
    lens = torch.full((enc.size(0),), enc.size(1), dtype=torch.int64, device=chunk.device)
    greedy_search_batch(model, enc, lens, hyps=state.hyps, frames=state.frames,
                        frame_offset=state.num_encoder_frames)
    state.num_encoder_frames += enc.size(1)
    return state
