"""Adversarial reweighting (ARW): the generic maths, free of any trainer.

Adversarially reweighted learning (Lahoti et al., NeurIPS 2020), as used for speaker verification by Jin et al.
(Interspeech 2022) and meant for transducer training as a trainer add-on: an *adversary* network ``f`` maps
per-sample inputs (pooled features, detached model states, k-means cluster ids -- never cohort labels) to a
positive score; the scores of a batch are normalised into weights ``lambda_i``; the *learner* minimises the
weighted loss ``mean_i lambda_i * loss_i`` while the adversary maximises it, so regions of the input space where
the learner does badly get more weight. Updates alternate on each batch after a learner-only warm-up:

1. learner step: weights from the adversary (no gradient to it), minimise ``mean(lambda * loss)``;
2. adversary step: per-sample losses of that forward (no gradient to the learner), *maximise* the same objective.

Weight normalisation (:func:`normalise_weights`): Lahoti et al. use ``lambda_i = 1 + n f_i / sum_j f_j``, whose
mean over the batch is 2 and whose minimum is 1 (every sample keeps at least its unweighted share, so the adversary
cannot starve any sample). serac divides it by ``1 + floor`` (``floor = 1`` gives Lahoti's form exactly halved):
``lambda_i = (floor + n f_i / sum_j f_j) / (1 + floor)``, so the weights are positive (at least
``floor / (1 + floor)``), have mean exactly 1 (the weighted loss is on the scale of the unweighted one, and the
learning rate means the same with or without ARW), and their ratios are Lahoti's.

Pairwise losses (metric learning, Jin et al.'s pairwise variant): a pair's weight is the *sum* of its two samples'
weights (:func:`pair_weights`); the weighted pair loss divides by 2 so that unit sample weights give the plain
mean over pairs.

This module imports only torch: a trainer (ASR add-on) or the speaker-verification trainer
(:mod:`serac.speaker.train`) drives it. Usage::

    arw = AdversarialReweighting(Adversary(input_dim), lr=1e-3, warmup_steps=500)
    for step, batch in enumerate(batches):
        losses = per_sample_loss(model, batch)                  # (n,), with grad to the learner
        w = arw.learner_weights(adv_input, step)                # ones during warm-up, else detached lambdas
        (w * losses).mean().backward(); optimizer.step()        # learner: minimise
        arw.adversary_step(adv_input, losses.detach(), step)    # adversary: maximise
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn


def _check_scores(scores: Tensor, floor: float) -> None:
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"adversary scores must be a non-empty vector, got shape {tuple(scores.shape)}")
    if floor < 0:
        raise ValueError(f"floor must be >= 0, got {floor}")


def normalise_weights(scores: Tensor, floor: float = 1.0, eps: float = 1e-12) -> Tensor:
    """``lambda_i = (floor + n s_i / sum_j s_j) / (1 + floor)`` for positive scores ``s`` of shape (n,).

    Mean exactly 1, every weight >= floor / (1 + floor) > 0 (for ``floor > 0``). Differentiable in ``scores``.
    """
    _check_scores(scores, floor)
    n = scores.numel()
    return (floor + n * scores / scores.sum().clamp_min(eps)) / (1.0 + floor)


def normalise_log_weights(log_scores: Tensor, floor: float = 1.0) -> Tensor:
    """:func:`normalise_weights` of ``exp(log_scores)``, computed in log space: exact also when every score has
    underflowed (a saturated sigmoid), where the plain sum would be clamped and the mean would no longer be 1."""
    _check_scores(log_scores, floor)
    return (floor + log_scores.numel() * torch.softmax(log_scores, dim=0)) / (1.0 + floor)


def pair_weights(sample_weights: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """The weight of pair k is ``w[first[k]] + w[second[k]]`` (Jin et al.'s pairwise weighting)."""
    return sample_weights[first] + sample_weights[second]


def weighted_mean(losses: Tensor, weights: Tensor) -> Tensor:
    """``mean_i weights_i * losses_i`` (shapes must match)."""
    if losses.shape != weights.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and weights {tuple(weights.shape)} differ in shape")
    return (weights * losses).mean()


def weighted_pair_mean(pair_losses: Tensor, sample_weights: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """``mean_k (w_first + w_second) / 2 * pair_loss_k``: the plain mean over pairs when all weights are 1."""
    return weighted_mean(pair_losses, pair_weights(sample_weights, first, second) / 2.0)


class Adversary(nn.Module):
    """Per-sample adversary: inputs (n, input_dim) -> normalised weights (n,).

    ``hidden_dim = 0``: a linear scorer (Lahoti et al.'s choice); otherwise one hidden ReLU layer. A sigmoid makes
    the scores positive; a LayerNorm on the input (no affine) makes it indifferent to feature scales. The last
    layer starts at zero, so every weight starts at exactly 1.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 32, floor: float = 1.0) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.floor = floor
        self.norm = nn.LayerNorm(input_dim, elementwise_affine=False)
        if hidden_dim > 0:
            self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        else:
            self.net = nn.Sequential(nn.Linear(input_dim, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def scores(self, x: Tensor) -> Tensor:
        return self.log_scores(x).exp()

    def log_scores(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"adversary expects inputs (n, {self.input_dim}), got {tuple(x.shape)}")
        return nn.functional.logsigmoid(self.net(self.norm(x))).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        return normalise_log_weights(self.log_scores(x), self.floor)


class AdversarialReweighting:
    """The alternating min-max schedule around an :class:`Adversary` and its own optimiser.

    ``warmup_steps``: learner-only steps (unit weights, adversary frozen) before the game starts;
    ``adversary_every``: the adversary updates on every k-th step after warm-up (1: every step).
    """

    def __init__(self, adversary: Adversary, lr: float = 1e-3, warmup_steps: int = 0, adversary_every: int = 1,
                 weight_decay: float = 0.0) -> None:
        if adversary_every < 1:
            raise ValueError(f"adversary_every must be >= 1, got {adversary_every}")
        self.adversary = adversary
        self.optimizer = torch.optim.Adam(adversary.parameters(), lr=lr, weight_decay=weight_decay)
        self.warmup_steps = warmup_steps
        self.adversary_every = adversary_every

    def active(self, step: int) -> bool:
        return step >= self.warmup_steps

    def learner_weights(self, adv_input: Tensor, step: int) -> Tensor:
        """Weights for the learner's loss: ones during warm-up, else the adversary's (detached)."""
        if not self.active(step):
            return torch.ones(adv_input.shape[0], dtype=adv_input.dtype, device=adv_input.device)
        with torch.no_grad():
            return self.adversary(adv_input)

    def adversary_objective(self, adv_input: Tensor, losses: Optional[Tensor] = None, pairs: Optional[tuple] = None,
                            objective: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        """The weighted loss as a function of the adversary's weights: per sample (``losses``), per pair when
        ``pairs`` = (first, second) index tensors are given and ``losses`` are pair losses, or any
        ``objective(weights)`` built from detached losses (e.g. a per-sample term plus a pairwise one)."""
        w = self.adversary(adv_input)
        if objective is not None:
            return objective(w)
        if losses is None:
            raise ValueError("give the detached losses or an objective function")
        if pairs is None:
            return weighted_mean(losses.detach(), w)
        return weighted_pair_mean(losses.detach(), w, pairs[0], pairs[1])

    def adversary_step(self, adv_input: Tensor, losses: Optional[Tensor], step: int, pairs: Optional[tuple] = None,
                       objective: Optional[Callable[[Tensor], Tensor]] = None) -> Optional[float]:
        """One gradient *ascent* step of the adversary on the weighted loss (skipped during warm-up and between
        ``adversary_every`` steps). Returns the objective before the step, or None when skipped."""
        if not self.active(step) or (step - self.warmup_steps) % self.adversary_every:
            return None
        self.optimizer.zero_grad(set_to_none=True)
        objective_value = self.adversary_objective(adv_input.detach(), losses, pairs, objective)
        (-objective_value).backward()
        self.optimizer.step()
        return float(objective_value.detach())
    def state_dict(self) -> dict:
        return {"adversary": self.adversary.state_dict(), "optimizer": self.optimizer.state_dict(),
                "warmup_steps": self.warmup_steps, "adversary_every": self.adversary_every}

    def load_state_dict(self, state: dict) -> None:
        self.adversary.load_state_dict(state["adversary"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.warmup_steps = state["warmup_steps"]
        self.adversary_every = state["adversary_every"]
