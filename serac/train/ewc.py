"""Elastic weight consolidation (Kirkpatrick et al. 2017) for regional fine-tuning, as in Trinh et al.,
"Reducing Geographic Disparities in Automatic Speech Recognition via Elastic Weight Consolidation",
Interspeech 2022.

Fine-tuning on the worst regions minimises ``L_adapt(theta) + (lambda / 2) * sum_i F_i (theta_i - theta*_i)^2``
where theta* is the baseline (the fine-tuning run's ``--init-from`` checkpoint) and F the diagonal of the
baseline's empirical Fisher information on its own training data.

Our Fisher definition (what :func:`fisher_diagonal` computes and the tests check by brute force)::

    F_i = (1 / N) * sum_{u=1..N} ( d l_u / d theta_i )^2,   l_u = L_u / T_u

with L_u the training loss of utterance u alone (``simple_loss_scale * simple + pruned``, the loss scales after
warm-up, plus ``ctc_scale * ctc`` and an encoder's auxiliary term when the model was trained with them) and T_u
its number of encoder frames: the *per-utterance* (per-sample) empirical Fisher, each utterance's loss
normalised per frame exactly as the trainer normalises a batch loss before back-propagating. The penalty is then
on the same per-frame scale as the loss it is added to (the trainer adds it after dividing by the batch's
frames: :class:`EWCAddon`, the trainer's ``ewc`` config section). Gradients are taken in eval mode (no
dropout, no SpecAugment), so the estimate is deterministic for a given set of utterances.

Files: the Fisher is ``torch.save({param_name: tensor})`` written atomically (metadata in a side JSON).
A training add-on (serac/train/addon.py) with the fine-tuning loss; serac.bin.estimate_fisher estimates F.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch

from serac.train.addon import AddonSetup, TrainingAddon
from serac.checkpoint import load_checkpoint
from serac.transducer.loss import loss_scales
from serac.utils import atomic_path

PathLike = Union[str, Path]
Batch = Tuple[torch.Tensor, torch.Tensor, Sequence[Sequence[int]]]  # (feats (N,T,F), lens (N,), token ids)
logger = logging.getLogger(__name__)


def utterance_loss(model, x: torch.Tensor, x_lens: torch.Tensor, y: Sequence[Sequence[int]],
                   loss_cfg: Mapping[str, Any]) -> torch.Tensor:
    """The per-frame transducer training loss of a batch: (simple_scale * simple + pruned_scale * pruned) /
    encoder frames, with the loss scales reached after warm-up and the same emission restrictions
    (``onset_margin``, ``ctc_align_margin``) as training. For one utterance this is l_u."""
    out = model(x, x_lens, [list(t) for t in y], prune_range=loss_cfg.get("prune_range", 5),
                lm_scale=loss_cfg.get("lm_scale", 0.25), am_scale=loss_cfg.get("am_scale", 0.0),
                rnnt_type=loss_cfg.get("rnnt_type", "modified"), ctc_align_margin=loss_cfg.get("ctc_align_margin"),
                onset_margin=loss_cfg.get("onset_margin"))
    simple_scale, pruned_scale = loss_scales(10**9, loss_cfg.get("simple_loss_scale", 0.5), 0)
    loss = simple_scale * out["simple_loss"] + pruned_scale * out["pruned_loss"]
    ctc_scale = float(loss_cfg.get("ctc_scale", 0.0) or 0.0)
    if ctc_scale > 0 and "ctc_loss" in out:  # the auxiliary CTC term, when the model was trained with it
        loss = loss + ctc_scale * out["ctc_loss"]
    if "aux_loss" in out:
        loss = loss + out["aux_loss"] * out["num_frames"].float()
    return loss / out["num_frames"].float().clamp(min=1.0)


def fisher_diagonal(model, batches: Iterable[Batch], loss_cfg: Mapping[str, Any], max_utts: int = 0,
                    log_every: int = 100) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """The per-utterance empirical Fisher diagonal (see the module docstring) over the utterances of
    ``batches`` (at most ``max_utts`` when > 0). Returns ({param name: F}, stats)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fisher = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params}
    was_training = model.training
    model.eval()
    count, skipped, loss_sum, t0 = 0, 0, 0.0, time.time()
    device = params[0][1].device
    # cuDNN refuses RNN backward in eval mode; the native kernels compute the same gradients
    cudnn_off = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else _null_context()
    try:
        with cudnn_off:
            for x, x_lens, y in batches:
                for i in range(x.size(0)):
                    if 0 < max_utts <= count:
                        break
                    t = int(x_lens[i])
                    loss = utterance_loss(model, x[i:i + 1, :t].to(device), x_lens[i:i + 1].to(device), [y[i]],
                                          loss_cfg)
                    if not torch.isfinite(loss):
                        skipped += 1
                        continue
                    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
                    for (n, _), g in zip(params, grads):
                        if g is not None:
                            fisher[n] += g.detach().double() ** 2
                    count += 1
                    loss_sum += float(loss.detach())
                    if log_every and count % log_every == 0:
                        logger.info(f"Fisher: {count} utterances, {time.time() - t0:.0f}s")
                if 0 < max_utts <= count:
                    break
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no utterance contributed to the Fisher estimate")
    out = {n: (f / count).to(p.dtype) for (n, p), f in zip(params, fisher.values())}
    total = sum(float(f.sum()) for f in out.values())
    numel = sum(f.numel() for f in out.values())
    stats = {"num_utts": count, "num_skipped_nonfinite": skipped, "mean_loss_per_frame": loss_sum / count,
             "fisher_sum": total, "fisher_mean": total / max(numel, 1),
             "fisher_max": max(float(f.max()) for f in out.values()), "num_params": numel,
             "seconds": time.time() - t0,
             "definition": "per-utterance empirical Fisher of the per-frame transducer loss l_u = L_u / T_u, "
                           "eval mode, loss scales after warm-up"}
    return out, stats


class _null_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def save_fisher(fisher: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """``torch.save({name: tensor})``, atomically (a killed run leaves the old file or none)."""
    with atomic_path(path) as tmp:
        torch.save({n: t.detach().cpu() for n, t in fisher.items()}, tmp)


def load_fisher(path: PathLike) -> Dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Fisher file {path} not found (run serac.bin.estimate_fisher)")
    fisher = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(fisher, dict) or not all(isinstance(v, torch.Tensor) for v in fisher.values()):
        raise ValueError(f"{path}: not a {{name: tensor}} Fisher file")
    return fisher


def ewc_penalty(named_params: Iterable[Tuple[str, torch.Tensor]], fisher: Mapping[str, torch.Tensor],
                theta_star: Mapping[str, torch.Tensor], lam: float) -> torch.Tensor:
    """(lam / 2) * sum_i F_i (theta_i - theta*_i)^2 over the parameters that have a Fisher entry."""
    total: Optional[torch.Tensor] = None
    for name, p in named_params:
        if name not in fisher:
            continue
        term = (fisher[name] * (p - theta_star[name]) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no parameter of the model has a Fisher entry")
    return 0.5 * lam * total


class EWCPenalty:
    """Callable ``penalty(model) -> (lambda/2) * sum_i F_i (theta_i - theta*_i)^2`` (a scalar tensor)."""

    def __init__(self, fisher: Mapping[str, torch.Tensor], theta_star: Mapping[str, torch.Tensor], lam: float,
                 model: Optional[torch.nn.Module] = None, device: Optional[torch.device] = None) -> None:
        self.lam = float(lam)
        self.fisher = {n: f.detach().to(device) if device else f.detach() for n, f in fisher.items()}
        self.theta_star = {n: theta_star[n].detach().clone().to(device) if device else theta_star[n].detach().clone()
                           for n in self.fisher if n in theta_star}
        missing = sorted(set(self.fisher) - set(self.theta_star))
        if missing:
            raise ValueError(f"theta* lacks parameters that have a Fisher entry: {missing[:5]}")
        if model is not None:
            params = dict(model.named_parameters())
            unknown = sorted(set(self.fisher) - set(params))
            if unknown:
                raise ValueError(f"Fisher entries that are not parameters of the model: {unknown[:5]}")
            uncovered = sorted(n for n, p in params.items() if p.requires_grad and n not in self.fisher)
            if uncovered:
                raise ValueError(f"model parameters without a Fisher entry: {uncovered[:5]}")
            for n, f in self.fisher.items():
                if f.shape != params[n].shape:
                    raise ValueError(f"Fisher {n}: shape {tuple(f.shape)} != parameter {tuple(params[n].shape)}")

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        return ewc_penalty(model.named_parameters(), self.fisher, self.theta_star, self.lam)

    @classmethod
    def from_config(cls, ewc_cfg: Mapping[str, Any], init_from: Optional[PathLike], model: torch.nn.Module,
                    device: Optional[torch.device] = None) -> "EWCPenalty":
        """From the trainer's ``ewc`` section ({fisher: path, lambda: float}); theta* = the parameters of the
        ``--init-from`` checkpoint."""
        if not init_from:
            raise ValueError("ewc.fisher is set but there is no --init-from checkpoint to take theta* from")
        theta_star = load_checkpoint(init_from)["model"]
        penalty = cls(load_fisher(ewc_cfg["fisher"]), theta_star, float(ewc_cfg.get("lambda", 0.0)), model, device)
        logger.info(f"EWC: lambda {penalty.lam:g}, Fisher {ewc_cfg['fisher']} "
                    f"({sum(f.numel() for f in penalty.fisher.values())} values), theta* from {init_from}")
        return penalty


def ewc_distance(state: Mapping[str, torch.Tensor], fisher: Mapping[str, torch.Tensor],
                 theta_star: Mapping[str, torch.Tensor]) -> float:
    """0.5 * sum_i F_i (theta_i - theta*_i)^2 of a state dict (the penalty for lambda = 1): how far, in the
    Fisher metric, a fine-tuned model moved from the baseline."""
    return float(ewc_penalty(((n, state[n].double()) for n in fisher if n in state),
                             {n: f.double() for n, f in fisher.items()},
                             {n: t.double() for n, t in theta_star.items()}, 1.0))


class EWCAddon(TrainingAddon):
    """The ``ewc`` config section ({fisher: path, lambda: float}; off while ``fisher`` is unset): adds
    :class:`EWCPenalty` to the per-frame training loss of every step that has frames."""

    name = "ewc"

    def __init__(self, penalty: EWCPenalty) -> None:
        self.ewc = penalty

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        return self.ewc(model)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], setup: AddonSetup) -> Optional["EWCAddon"]:
        if not (cfg.get("ewc") or {}).get("fisher"):
            return None
        return cls(EWCPenalty.from_config(cfg["ewc"], setup.init_from, setup.model, setup.device))
