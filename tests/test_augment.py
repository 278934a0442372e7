"""Feature-domain training augmentation (serac/data/augment.py): data.noise_floor."""
from __future__ import annotations

import torch

from serac.data.augment import raise_noise_floor


def _utterances() -> torch.Tensor:
    """Two utterances of log-mel features: -8 (background) with words at +2 on frames 10-30 and 40-60; the
    second is 50 frames long (the rest is padding)."""
    x = torch.full((2, 80, 5), -8.0)
    x[:, 10:30] = 2.0
    x[:, 40:60] = 2.0
    x[1, 50:] = 0.0
    return x


def test_noise_floor_fills_the_pauses_and_keeps_the_words():
    x, lens = _utterances(), torch.tensor([80, 50])
    torch.manual_seed(0)
    y = raise_noise_floor(x, lens, prob=1.0, low=3.0, high=3.0, jitter=0.0)
    # noise 3 nats below the speech (per-bin 90th percentile 2.0): -1.0 in the pauses, words nearly unchanged
    assert torch.allclose(y[0, 0:10], torch.full((10, 5), float(torch.logaddexp(torch.tensor(-8.0),
                                                                                 torch.tensor(-1.0)))))
    assert (y[0, 10:30] - 2.0).abs().max() < 0.05
    assert torch.equal(y[1, 50:], x[1, 50:])        # padding untouched
    assert torch.equal(raise_noise_floor(x, lens, prob=0.0, low=3.0, high=3.0), x)


def test_noise_floor_draws_from_the_global_rng():
    """Reproducible for a seed (the trainer saves and restores torch's RNG with a checkpoint), different for
    another seed, and an utterance is either left as it is or noised as a whole."""
    x, lens = _utterances(), torch.tensor([80, 50])
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(raise_noise_floor(x, lens, prob=0.5, low=2.0, high=6.0))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    for run in runs:
        for i in range(2):
            untouched = torch.equal(run[i], x[i])
            noised = bool((run[i, :10] > x[i, :10] + 1.0).all())
            assert untouched != noised
