"""Adversarial reweighting maths (serac/train/arw.py): weight normalisation, the min-max directions on a toy
problem, pairwise weights."""
from __future__ import annotations

import pytest
import torch

from serac.train.arw import (Adversary, AdversarialReweighting, normalise_weights, pair_weights, weighted_mean,
                             weighted_pair_mean)


@pytest.mark.parametrize("floor", [0.0, 0.5, 1.0])
def test_weights_have_mean_one_and_are_positive(floor):
    torch.manual_seed(0)
    scores = torch.rand(37) * 5 + 1e-6
    w = normalise_weights(scores, floor=floor)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert (w > 0).all()
    assert w.min().item() >= floor / (1 + floor) - 1e-6
    # ratios are those of Lahoti et al.'s 1 + n f / sum f (floor 1 is exactly half of it)
    lahoti = 1 + scores.numel() * scores / scores.sum()
    assert torch.allclose(normalise_weights(scores, floor=1.0), lahoti / 2)
    # the adversary's weights too, from any input
    adv = Adversary(6, hidden_dim=8)
    nn_w = adv(torch.randn(11, 6))
    assert torch.allclose(nn_w, torch.ones(11))  # zero-initialised last layer: uniform at start
    with torch.no_grad():
        adv.net[-1].weight.normal_()
    nn_w = adv(torch.randn(11, 6) * 10)
    assert nn_w.mean().item() == pytest.approx(1.0, abs=1e-6) and (nn_w > 0).all() and nn_w.std() > 0


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="non-empty vector"):
        normalise_weights(torch.ones(2, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        weighted_mean(torch.ones(3), torch.ones(4))


def test_pair_weights_are_sums_of_sample_weights():
    w = torch.tensor([0.5, 1.25, 1.0, 1.25])
    first, second = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 3, 2, 3])
    pw = pair_weights(w, first, second)
    assert torch.equal(pw, torch.tensor([1.75, 1.75, 2.25, 2.25]))
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert weighted_pair_mean(losses, torch.ones(4), first, second).item() == pytest.approx(losses.mean().item())
    assert weighted_pair_mean(losses, w, first, second).item() == pytest.approx((pw * losses).mean().item() / 2)


def _toy():
    """Regression where one region of the input space (x0 > 1) is fitted badly by a linear model."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = x[:, 1] + 3.0 * (x[:, 0] > 1).float()
    return x, y


def test_adversary_ascends_and_learner_descends_the_weighted_loss():
    torch.manual_seed(0)
    x, y = _toy()
    learner = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(learner.parameters(), lr=0.05)
    arw = AdversarialReweighting(Adversary(2, hidden_dim=16), lr=0.05, warmup_steps=2)

    def losses():
        return (learner(x).squeeze(-1) - y) ** 2

    assert torch.equal(arw.learner_weights(x, step=0), torch.ones(64))  # warm-up: unit weights
    assert arw.adversary_step(x, losses().detach(), step=1) is None       # warm-up: adversary frozen
    for step in range(2, 12):
        # adversary step: the weighted loss (learner fixed) goes up
        before = arw.adversary_objective(x, losses()).item()
        returned = arw.adversary_step(x, losses().detach(), step)
        after = arw.adversary_objective(x, losses()).item()
        assert returned == pytest.approx(before, rel=1e-6)
        assert after > before, (step, before, after)
        # learner step: the weighted loss (weights fixed) goes down
        w = arw.learner_weights(x, step)
        before = weighted_mean(losses(), w).item()
        opt.zero_grad()
        weighted_mean(losses(), w).backward()
        opt.step()
        assert weighted_mean(losses(), w).item() < before
    # the adversary learnt to up-weight the badly fitted region
    w = arw.learner_weights(x, step=20)
    hard = x[:, 0] > 1
    assert w[hard].mean() > w[~hard].mean()


def test_pairwise_adversary_step_ascends():
    torch.manual_seed(1)
    x = torch.randn(8, 3)
    first, second = torch.combinations(torch.arange(8), 2).T
    pair_losses = (x[first, 0] - x[second, 0]).abs()
    arw = AdversarialReweighting(Adversary(3, hidden_dim=0), lr=0.1)
    before = arw.adversary_objective(x, pair_losses, (first, second)).item()
    arw.adversary_step(x, pair_losses, step=0, pairs=(first, second))
    assert arw.adversary_objective(x, pair_losses, (first, second)).item() > before
