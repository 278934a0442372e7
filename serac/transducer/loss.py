"""Pruned RNN-T loss backend: k2 when importable, otherwise fast_rnnt (k2's RNN-T loss as its own package).

Both expose the same functions (``rnnt_loss_smoothed``, ``get_rnnt_prune_ranges``, ``do_rnnt_pruning``,
``rnnt_loss_pruned``, ``rnnt_loss``), so the rest of serac calls :data:`backend` and never imports either.
Set ``SERAC_RNNT_BACKEND=fast_rnnt`` (or ``k2``) to force one.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional, Tuple

import torch

_FUNCTIONS = ("rnnt_loss_smoothed", "get_rnnt_prune_ranges", "do_rnnt_pruning", "rnnt_loss_pruned", "rnnt_loss")


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
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The smoothed "simple" loss, prune ranges from its gradients, and the pruned loss.

    am/lm: encoder / decoder outputs projected to the joiner dim, (N, T, J) and (N, S+1, J);
    simple_am/simple_lm: the same projected to the vocabulary, (N, T, V) and (N, S+1, V);
    joiner: called as ``joiner(am_pruned, lm_pruned, project_input=False)`` on (N, T, R, J) inputs.
    rnnt_type: "modified" (at most one symbol per frame: emitting advances time, as greedy search and modified
    beam search decode) or "regular" (Graves; a frame may emit many symbols).
    Returns (simple_loss, pruned_loss).
    """
    k = require_backend()
    boundary = _boundary(x_lens, y_lens)
    simple_loss, (px_grad, py_grad) = k.rnnt_loss_smoothed(
        lm=simple_lm.float(), am=simple_am.float(), symbols=symbols, termination_symbol=blank_id,
        lm_only_scale=lm_scale, am_only_scale=am_scale, boundary=boundary, reduction=reduction,
        return_grad=True, rnnt_type=rnnt_type)
    ranges = k.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range)
    am_pruned, lm_pruned = k.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
    logits = joiner(am_pruned, lm_pruned, project_input=False)
    pruned_loss = k.rnnt_loss_pruned(logits=logits.float(), symbols=symbols, ranges=ranges,
                                     termination_symbol=blank_id, boundary=boundary, reduction=reduction,
                                     rnnt_type=rnnt_type)
    return simple_loss, pruned_loss


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
