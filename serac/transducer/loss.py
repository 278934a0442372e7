"""Pruned RNN-T loss backend: k2 when importable, otherwise fast_rnnt (k2's RNN-T loss as its own package).

Both expose the same functions (``get_rnnt_logprobs_smoothed``, ``get_rnnt_logprobs_pruned``,
``mutual_information_recursion``, ``get_rnnt_prune_ranges``, ``do_rnnt_pruning``, ``rnnt_loss``), so the rest of
serac calls :data:`backend` and never imports either.
Set ``SERAC_RNNT_BACKEND=fast_rnnt`` (or ``k2``) to force one.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Callable, List, Optional, Tuple

import torch

_FUNCTIONS = ("get_rnnt_logprobs_smoothed", "get_rnnt_logprobs_pruned", "mutual_information_recursion",
              "get_rnnt_prune_ranges", "do_rnnt_pruning", "rnnt_loss")


def _load_backend() -> Tuple[Optional[ModuleType], str]:
    wanted = os.environ.get("SERAC_RNNT_BACKEND")
    candidates = [wanted] if wanted else ["k2", "fast_rnnt"]
    errors = []
    for name in candidates:
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # ImportError, or a k2 build that fails to load its .so
            errors.append(f"{name}: {e}")
            continue
        if all(hasattr(mod, f) for f in _FUNCTIONS):
            return mod, name
        errors.append(f"{name}: lacks one of {_FUNCTIONS}")
    return None, "; ".join(errors)


backend, backend_name = _load_backend()


def require_backend() -> ModuleType:
    if backend is None:
        raise ImportError(
            "No RNN-T loss backend: neither k2 nor fast_rnnt could be imported "
            f"({backend_name}). Run tools/install.sh, which builds fast_rnnt from source.")
    return backend


def _boundary(x_lens: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
    boundary = torch.zeros((x_lens.size(0), 4), dtype=torch.int64, device=x_lens.device)
    boundary[:, 2] = y_lens
    boundary[:, 3] = x_lens
    return boundary


def pruned_rnnt_loss(
    am: torch.Tensor,
    lm: torch.Tensor,
    simple_am: torch.Tensor,
    simple_lm: torch.Tensor,
    joiner,
    symbols: torch.Tensor,
    x_lens: torch.Tensor,
    y_lens: torch.Tensor,
    blank_id: int = 0,
    prune_range: int = 5,
    lm_scale: float = 0.25,
    am_scale: float = 0.0,
    reduction: str = "sum",
    rnnt_type: str = "modified",
    earliest: Optional[torch.Tensor] = None,
    px_hook: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    delay_penalty: float = 0.0,
    latest: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The smoothed "simple" loss, prune ranges from its gradients, and the pruned loss.

    am/lm: encoder / decoder outputs projected to the joiner dim, (N, T, J) and (N, S+1, J);
    simple_am/simple_lm: the same projected to the vocabulary, (N, T, V) and (N, S+1, V);
    joiner: called as ``joiner(am_pruned, lm_pruned, project_input=False)`` on (N, T, R, J) inputs.
    rnnt_type: "modified" (at most one symbol per frame: emitting advances time, as greedy search and modified
    beam search decode) or "regular" (Graves; a frame may emit many symbols).
    earliest: optional (B, S) first frame at which each symbol may be emitted (alignment-restricted RNN-T,
    Mahadeokar et al. 2021); applied to both losses, so the prune ranges respect it too. latest: optional (B, S)
    last frame at which each symbol may be emitted (the right side; needs ``earliest``).
    px_hook: optional function of the (B, S, T) emission log-probs returning them modified (a penalty, a gradient
    scale: serac.multitalker's FastEmit and end-of-turn latency penalty); applied to both losses, like earliest.
    delay_penalty: k2's delay penalty (Kang et al. 2022, "Delay-penalized transducer"): every emission at frame t
    gets ``delay_penalty * ((T-1)/2 - t)`` added to its log-prob, which rewards early emission; applied to both
    losses, as the backends' rnnt_loss_smoothed / rnnt_loss_pruned do. 0: off.
    A row without symbols (e.g. an STS output channel nobody spoke on) has one path, a blank on every frame: its
    losses are that path's (the pruned loss exactly; the simple loss with the unsmoothed simple joiner), computed
    here because the backends need at least one symbol per row.
    Returns (simple_loss, pruned_loss).
    """
    k = require_backend()
    empty = y_lens == 0
    if bool(empty.any()):
        return _with_empty_rows(empty, am, lm, simple_am, simple_lm, joiner, symbols, x_lens, y_lens, blank_id,
                                prune_range, lm_scale, am_scale, reduction, rnnt_type, earliest, px_hook,
                                delay_penalty, latest)
    if latest is not None and earliest is None:
        raise ValueError("latest needs earliest (give zeros for no left restriction)")
    boundary = _boundary(x_lens, y_lens)
    if earliest is not None and rnnt_type == "regular":
        raise ValueError("emission restriction (earliest) is implemented for modified/constrained RNN-T only")
    # the same two steps as the backend's rnnt_loss_smoothed / rnnt_loss_pruned, with the optional restriction,
    # hook and delay penalty applied to px in between
    px, py = k.get_rnnt_logprobs_smoothed(
        lm=simple_lm.float(), am=simple_am.float(), symbols=symbols, termination_symbol=blank_id,
        lm_only_scale=lm_scale, am_only_scale=am_scale, boundary=boundary, rnnt_type=rnnt_type)
    if earliest is not None:
        px = restrict_emissions(px, earliest, latest)
    if px_hook is not None:
        px = px_hook(px)
    if delay_penalty:
        px = px + emission_delay_penalty(px, x_lens, delay_penalty)
    scores, (px_grad, py_grad) = k.mutual_information_recursion(px=px, py=py, boundary=boundary, return_grad=True)
    simple_loss = _reduce(-scores, reduction)
    ranges = k.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range)
    am_pruned, lm_pruned = k.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
    logits = joiner(am_pruned, lm_pruned, project_input=False)
    px, py = k.get_rnnt_logprobs_pruned(logits=logits.float(), symbols=symbols, ranges=ranges,
                                        termination_symbol=blank_id, boundary=boundary, rnnt_type=rnnt_type)
    if earliest is not None:
        px = restrict_emissions(px, earliest, latest)
    if px_hook is not None:
        px = px_hook(px)
    if delay_penalty:
        px = px + emission_delay_penalty(px, x_lens, delay_penalty)
    pruned_loss = _reduce(-k.mutual_information_recursion(px=px, py=py, boundary=boundary), reduction)
    return simple_loss, pruned_loss


def _with_empty_rows(empty: torch.Tensor, am, lm, simple_am, simple_lm, joiner, symbols, x_lens, y_lens, blank_id,
                     prune_range, lm_scale, am_scale, reduction, rnnt_type, earliest, px_hook,
                     delay_penalty: float = 0.0, latest=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`pruned_rnnt_loss` of a batch with symbol-less rows: those by their all-blank path, the others by the
    backend (``px_hook`` still sees every row, the others' filled with zeros, so a hook built for the whole batch
    applies unchanged). The delay penalty has nothing to act on in a symbol-less row."""
    n = int(y_lens.size(0))
    gone = empty.nonzero(as_tuple=True)[0]
    keep = (~empty).nonzero(as_tuple=True)[0]
    frame = torch.arange(am.size(1), device=am.device).unsqueeze(0) < x_lens[gone].unsqueeze(1)   # (n_gone, T)
    blank_lp = joiner(am[gone], lm[gone, :1], project_input=False).float().log_softmax(-1)[..., blank_id]
    simple_lp = (simple_am[gone] + simple_lm[gone, :1]).float().log_softmax(-1)[..., blank_id]
    simple = torch.zeros(n, dtype=torch.float32, device=am.device).index_copy(
        0, gone, -(simple_lp * frame).sum(1))
    pruned = torch.zeros(n, dtype=torch.float32, device=am.device).index_copy(0, gone, -(blank_lp * frame).sum(1))
    if keep.numel():
        hook = None
        if px_hook is not None:
            def hook(px: torch.Tensor) -> torch.Tensor:
                full = px.new_zeros((n, *px.shape[1:])).index_copy(0, keep, px)
                return px_hook(full).index_select(0, keep)
        s_keep, p_keep = pruned_rnnt_loss(
            am[keep], lm[keep], simple_am[keep], simple_lm[keep], joiner, symbols[keep], x_lens[keep], y_lens[keep],
            blank_id, prune_range, lm_scale, am_scale, "none", rnnt_type,
            earliest[keep] if earliest is not None else None, hook, delay_penalty,
            latest[keep] if latest is not None else None)
        simple = simple.index_copy(0, keep, s_keep.float())
        pruned = pruned.index_copy(0, keep, p_keep.float())
    return _reduce(simple, reduction), _reduce(pruned, reduction)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be sum, mean or none, got {reduction!r}")


def emission_delay_penalty(px: torch.Tensor, x_lens: torch.Tensor, delay_penalty: float) -> torch.Tensor:
    """The (B, 1, T0) term k2's ``delay_penalty`` adds to the emission log-probs px (B, S, T0): ``delay_penalty *
    ((T_b - 1) / 2 - t)`` for utterance b of T_b frames, so an alignment that emits earlier scores higher (the
    term is zero on average over the frames, so the loss of a uniform alignment is unchanged)."""
    offset = (x_lens.to(px.dtype) - 1) / 2
    t = torch.arange(px.size(2), device=px.device, dtype=px.dtype)
    return (delay_penalty * (offset.view(-1, 1, 1) - t.view(1, 1, -1))).to(px.dtype)


def restrict_emissions(px: torch.Tensor, earliest: torch.Tensor,
                       latest: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Remove from the lattice every emission of symbol ``s`` at a frame ``t < earliest[b, s]`` (and, given
    ``latest`` (B, S), at a frame ``t > latest[b, s]``).

    px: (B, S, T) log-probs of emitting symbol s at frame t (modified RNN-T layout). Only the transition goes:
    the symbol's probability stays in the softmax normaliser, so the loss still pushes it down on those frames
    (the blank there has to win), which is what teaches the model not to emit before the evidence."""
    t = torch.arange(px.size(2), device=px.device).view(1, 1, -1)
    outside = t < earliest.unsqueeze(2)
    if latest is not None:
        outside = outside | (t > latest.unsqueeze(2))
    return px.masked_fill(outside, float("-inf"))


def speech_segments(above: List[bool], min_gap: int = 5, min_len: int = 5) -> List[List[int]]:
    """[start, end) frames of the speech segments of one utterance, from its :func:`speech_frames` row (cut to
    its length): runs of speech frames, runs closer than ``min_gap`` frames merged, runs under ``min_len`` frames
    dropped."""
    segs: List[List[int]] = []
    for t, a in enumerate(above):
        if not a:
            continue
        if segs and t - segs[-1][1] < min_gap:
            segs[-1][1] = t + 1
        else:
            segs.append([t, t + 1])
    return [g for g in segs if g[1] - g[0] >= min_len]


@torch.no_grad()
def batch_segments(x: torch.Tensor, x_lens: torch.Tensor) -> List[List[List[int]]]:
    """:func:`speech_segments` of every row of (B, T, F) log-mel features, unnormalised (input frames)."""
    above = speech_frames(x).cpu()
    return [speech_segments(above[i, : int(x_lens[i])].tolist()) for i in range(above.size(0))]


def word_windows(segments: List[List[List[int]]], x_lens: torch.Tensor, y_lens: torch.Tensor, factor: int,
                 before: int, after: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-symbol emission windows (earliest, latest), (B, S) encoder frames, from each utterance's speech
    segments (:func:`batch_segments`, input frames): where an utterance has exactly as many segments as symbols
    (words spoken with pauses between them, as in yesno or digit strings), symbol s may be emitted from ``before``
    encoder frames before segment s's first frame to ``after`` encoder frames after its last (alignment-restricted
    RNN-T with the energy detector as the aligner); every other utterance is left unrestricted (earliest 0,
    latest T-1). Windows that leave no path are dropped by :func:`feasible_windows`, with whatever other restriction
    they are combined with. x_lens in input frames, y_lens symbols per row."""
    b, s_max = int(y_lens.size(0)), int(y_lens.max()) if y_lens.numel() else 0
    t_enc = (x_lens // factor).tolist()
    earliest = torch.zeros(b, s_max, dtype=torch.int64)
    latest = torch.tensor(t_enc, dtype=torch.int64).sub(1).clamp(min=0).unsqueeze(1).expand(b, s_max).clone()
    for i, segs in enumerate(segments):
        if len(segs) != int(y_lens[i]) or not segs:
            continue
        earliest[i, : len(segs)] = torch.tensor([max(0, g[0] // factor - before) for g in segs])
        latest[i, : len(segs)] = torch.tensor([min(t_enc[i] - 1, (g[1] - 1) // factor + after) for g in segs])
    return earliest.to(x_lens.device), latest.to(x_lens.device)


@torch.no_grad()
def speech_frames(x: torch.Tensor, head_frames: int = 5, delta: float = 2.3) -> torch.Tensor:
    """(B, T) bool: the frames whose mean log-mel energy exceeds the utterance's noise floor (the mean over its
    first ``head_frames`` frames) by ``delta`` nats (2.3 = 10 dB): the energy detector behind
    :func:`speech_onset` and :func:`batch_segments`. x: (B, T, F) log-mel features, unnormalised."""
    energy = x.float().mean(-1)
    return energy > energy[:, :head_frames].mean(1, keepdim=True) + delta


@torch.no_grad()
def speech_onset(x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
    """First input frame of :func:`speech_frames` within the utterance's length; 0 where there is none (no
    restriction follows). x: (B, T, F) log-mel features, unnormalised."""
    t = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    above = speech_frames(x) & (t < x_lens.unsqueeze(1))
    return torch.where(above.any(1), above.float().argmax(1), torch.zeros_like(x_lens))


def feasible_earliest(earliest: torch.Tensor, x_lens: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
    """:func:`feasible_windows` with no upper bounds."""
    return feasible_windows(earliest, None, x_lens, y_lens)[0]


def feasible_windows(earliest: torch.Tensor, latest: Optional[torch.Tensor], x_lens: torch.Tensor,
                     y_lens: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Drop (earliest 0, latest T-1) the restriction of any utterance whose symbols could not all be emitted, one
    per frame and in order, within their windows [earliest, latest] and its length: the lattice would have no path
    left. ``latest`` None: no upper bounds."""
    if earliest.size(1) == 0:
        return earliest, latest
    s_idx = torch.arange(earliest.size(1), device=earliest.device).unsqueeze(0)
    # the earliest frame symbol s can really take: max over s' <= s of earliest[s'] + (s - s'); a path exists iff
    # that frame is within symbol s's bound for every symbol of the utterance
    needed = torch.cummax(earliest - s_idx, dim=1).values + s_idx
    end = (x_lens - 1).unsqueeze(1)
    bound = end if latest is None else torch.minimum(latest, end)
    ok = ((needed <= bound) | (s_idx >= y_lens.unsqueeze(1))).all(1, keepdim=True)
    earliest = torch.where(ok, earliest, torch.zeros_like(earliest))
    if latest is not None:
        latest = torch.where(ok, latest, end.clamp(min=0).expand_as(latest))
    return earliest, latest


@torch.no_grad()
def ctc_forced_alignment(log_probs: torch.Tensor, x_lens: torch.Tensor, symbols: torch.Tensor,
                         y_lens: torch.Tensor, blank_id: int = 0) -> torch.Tensor:
    """Viterbi CTC alignment. log_probs (B, T, V), symbols (B, S) padded. Returns (B, S) long: the first
    frame of each symbol on the best path; -1 for padding and for utterances with no valid alignment."""
    b_size, t_max, _ = log_probs.shape
    s_max = symbols.size(1)
    n_ext = 2 * s_max + 1
    ext = torch.full((b_size, n_ext), blank_id, dtype=torch.long, device=log_probs.device)
    ext[:, 1::2] = symbols
    skip = torch.zeros((b_size, n_ext), dtype=torch.bool, device=log_probs.device)
    skip[:, 2:] = (ext[:, 2:] != blank_id) & (ext[:, 2:] != ext[:, :-2])
    emit = log_probs.float().gather(2, ext.unsqueeze(1).expand(b_size, t_max, n_ext))
    neg = torch.tensor(float("-inf"), device=log_probs.device)
    alpha = torch.full((b_size, n_ext), float("-inf"), device=log_probs.device)
    alpha[:, 0] = emit[:, 0, 0]
    if n_ext > 1:
        alpha[:, 1] = emit[:, 0, 1]
    back = torch.zeros((b_size, t_max, n_ext), dtype=torch.long, device=log_probs.device)
    pad1 = torch.full((b_size, 1), float("-inf"), device=log_probs.device)
    pad2 = torch.full((b_size, 2), float("-inf"), device=log_probs.device)
    for t in range(1, t_max):
        from1 = torch.cat([pad1, alpha[:, :-1]], dim=1)
        from2 = torch.where(skip, torch.cat([pad2, alpha[:, :-2]], dim=1), neg)
        best, arg = torch.stack([alpha, from1, from2], dim=-1).max(dim=-1)
        active = (t < x_lens).unsqueeze(1)
        alpha = torch.where(active, best + emit[:, t], alpha)
        back[:, t] = torch.where(active, arg, torch.zeros_like(arg))
    end_blank = (2 * y_lens).unsqueeze(1)
    end_sym = (2 * y_lens - 1).clamp(min=0).unsqueeze(1)
    a_blank, a_sym = alpha.gather(1, end_blank).squeeze(1), alpha.gather(1, end_sym).squeeze(1)
    a_sym = torch.where(y_lens > 0, a_sym, neg)
    pos = torch.where(a_sym > a_blank, end_sym.squeeze(1), end_blank.squeeze(1))
    valid = torch.isfinite(torch.maximum(a_sym, a_blank))
    first = torch.full((b_size, max(s_max, 1)), -1, dtype=torch.long, device=log_probs.device)
    for t in range(t_max - 1, -1, -1):
        on_symbol = (pos % 2 == 1) & (t < x_lens)
        s_idx = ((pos - 1) // 2).clamp(min=0, max=max(s_max - 1, 0)).unsqueeze(1)
        current = first.gather(1, s_idx)
        first.scatter_(1, s_idx, torch.where(on_symbol.unsqueeze(1), torch.full_like(current, t), current))
        if t > 0:
            pos = pos - back[:, t].gather(1, pos.unsqueeze(1)).squeeze(1)
    first = first[:, :s_max]
    keep = valid.unsqueeze(1) & (torch.arange(s_max, device=first.device).unsqueeze(0) < y_lens.unsqueeze(1))
    return torch.where(keep, first, torch.full_like(first, -1))


def full_rnnt_loss(logits: torch.Tensor, symbols: torch.Tensor, x_lens: torch.Tensor, y_lens: torch.Tensor,
                   blank_id: int = 0, reduction: str = "sum", rnnt_type: str = "modified") -> torch.Tensor:
    """The unpruned RNN-T loss on (N, T, S+1, V) logits."""
    k = require_backend()
    return k.rnnt_loss(logits=logits.float(), symbols=symbols, termination_symbol=blank_id,
                       boundary=_boundary(x_lens, y_lens), reduction=reduction, rnnt_type=rnnt_type)


def loss_scales(step: int, simple_loss_scale: float, warm_step: int) -> Tuple[float, float]:
    """Warm-up of the loss scales (as icefall): the simple loss dominates at first while the prune ranges
    it yields are still poor, then the pruned loss takes over."""
    if warm_step <= 0 or step >= warm_step:
        return simple_loss_scale, 1.0
    frac = step / warm_step
    return 1.0 - frac * (1.0 - simple_loss_scale), 0.1 + 0.9 * frac
