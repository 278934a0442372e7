"""How many test speakers a comparison needs: the width of the paired speaker-bootstrap interval of a relative WER
difference as a function of the number of speakers, measured by resampling the speakers of a real pair of decodes.

Two systems A and B decoded on the same test set give per speaker (errors of A, errors of B, reference words). The
relative difference is ``sum(E_A) / sum(E_B) - 1`` (the same reference words on both sides). Drawing ``n`` speakers
with replacement from the test set's speakers, both systems on the same draw (paired), and repeating gives the
spread of the difference a test set of ``n`` such speakers would show; its 2.5-97.5 percentile range is the 95%
interval the recipes report (the recipes resample the test set's own speakers, ``n`` = the set's size). The
half-width of that interval falls as ``1/sqrt(n)``; :func:`speakers_for_half_width` finds the ``n`` at which it is
at most a target (e.g. 3 points for a 3% relative difference to be told from 0), by bootstrap at each candidate.

This assumes the test set's speakers represent the population the larger set would be drawn from (for the
built-in synthetic corpus they are draws of the same generator, so a larger set is a matter of
``--test-speakers``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from serac.scoring.per_speaker import Result, speaker_counts


def interval_side(interval: Optional[Sequence[float]], bound: float = 0.0, upper_inclusive: bool = False
                  ) -> Optional[str]:
    """Where a 95% interval lies against ``bound``: 'below' (its upper end is under it; with ``upper_inclusive``,
    at or under it, for claims of the form "<= bound"), 'above' (its lower end is over it), 'contains' (it includes
    the bound), or None (no interval, or a NaN end). Every recipe's verdict ("holds / does not hold / undecided at
    this size") is read from this, in its own words."""
    if not interval:
        return None
    low, high = interval
    if low != low or high != high:
        return None
    if high < bound or (upper_inclusive and high == bound):
        return "below"
    if low > bound:
        return "above"
    return "contains"


def paired_speaker_errors(a: Sequence[Result], b: Sequence[Result], speakers: Mapping[str, str]
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[str]]:
    """Per speaker (sorted): errors of ``a``, errors of ``b``, reference words, and the speakers. The two result
    lists must cover the same cuts with the same references (ValueError naming a cut otherwise)."""
    refs_a = {c: list(r) for c, r, _ in a}
    refs_b = {c: list(r) for c, r, _ in b}
    if set(refs_a) != set(refs_b):
        only = sorted(set(refs_a) ^ set(refs_b))
        raise ValueError(f"the two decodes cover different cuts ({len(only)} in one only, e.g. {only[0]})")
    for c, ref in refs_a.items():
        if refs_b[c] != ref:
            raise ValueError(f"cut {c}: the two decodes have different references")
    ca, cb = speaker_counts(a, speakers), speaker_counts(b, speakers)
    names = sorted(ca)
    return (np.array([ca[s].errs for s in names], dtype=np.float64),
            np.array([cb[s].errs for s in names], dtype=np.float64),
            np.array([ca[s].words for s in names], dtype=np.float64), names)


def relative_difference_interval(errors_a: np.ndarray, errors_b: np.ndarray, n_speakers: int,
                                 n_bootstrap: int = 1000, seed: int = 0) -> Tuple[float, float]:
    """95% interval (percent) of ``sum(E_A)/sum(E_B) - 1`` over test sets of ``n_speakers`` speakers drawn with
    replacement from these (paired)."""
    if len(errors_a) != len(errors_b) or len(errors_a) == 0:
        raise ValueError("need the same, non-empty speaker list for both systems")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(errors_a), size=(n_bootstrap, n_speakers))
    num, den = errors_a[draws].sum(1), errors_b[draws].sum(1)
    keep = den > 0
    if not keep.any():
        raise ValueError("system B makes no errors on any resample: the relative difference is undefined")
    low, high = np.percentile(100.0 * (num[keep] / den[keep] - 1.0), [2.5, 97.5])
    return float(low), float(high)


def half_width(interval: Tuple[float, float]) -> float:
    return (interval[1] - interval[0]) / 2.0


def speakers_for_half_width(errors_a: np.ndarray, errors_b: np.ndarray, target: float, n_bootstrap: int = 1000,
                            seed: int = 0, max_speakers: int = 1_000_000) -> Dict[str, float]:
    """The smallest number of speakers (to within 5%) whose bootstrap interval half-width is <= ``target``
    percentage points: the ``1/sqrt(n)`` law gives a first guess from the current size, then the bootstrap is
    checked by doubling / bisection. Returns {speakers, half_width (at that size), guess (the sqrt-law one)}."""
    n0 = len(errors_a)
    w0 = half_width(relative_difference_interval(errors_a, errors_b, n0, n_bootstrap, seed))
    guess = int(np.ceil(n0 * (w0 / target) ** 2)) if target > 0 else max_speakers

    def ok(n: int) -> bool:
        return half_width(relative_difference_interval(errors_a, errors_b, n, n_bootstrap, seed)) <= target

    lo, hi = 1, max(2, guess)
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > max_speakers:
            raise ValueError(f"more than {max_speakers} speakers would be needed for a half-width of {target}")
    while hi - lo > max(1, hi // 20):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    width = half_width(relative_difference_interval(errors_a, errors_b, hi, n_bootstrap, seed))
    return {"speakers": float(hi), "half_width": width, "guess": float(guess)}


def pooled_speaker_errors(a: Sequence[Sequence[Result]], b: Sequence[Sequence[Result]], speakers: Dict[str, Any]
                          ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Per speaker: the errors of system A averaged over its seeds (``a``: one result list per seed), the same for
    B, and the speakers. Every seed's decode is checked against the other system's first (same cuts, same
    references) by :func:`paired_speaker_errors`."""
    pairs_a = [paired_speaker_errors(ra, b[0], speakers) for ra in a]
    pairs_b = [paired_speaker_errors(a[0], rb, speakers) for rb in b]
    names = pairs_a[0][3]
    return (np.mean([p[0] for p in pairs_a], axis=0), np.mean([p[1] for p in pairs_b], axis=0), names)
