"""Speaker-verification metrics: EER, minDCF, and their breakdown by cohort.

Conventions (stated once, used everywhere):

- A trial is accepted when ``score >= threshold``. Candidate thresholds are every distinct score plus ``+inf``
  (accept nothing), so the metrics are exactly what a brute-force sweep over those thresholds gives.
- ``P_miss(t)`` = fraction of target trials with ``score < t``; ``P_fa(t)`` = fraction of non-target trials with
  ``score >= t``.
- **EER** = ``min over t of max(P_miss(t), P_fa(t))``: the smallest error rate at which both error rates are at
  or below it (no interpolation between operating points; with few trials this is slightly pessimistic compared
  with an interpolated crossing).
- **minDCF** = ``min over t of C_miss * P_miss(t) * P_target + C_fa * P_fa(t) * (1 - P_target)``, divided by
  ``min(C_miss * P_target, C_fa * (1 - P_target))`` (the cost of the best trivial system), so 1.0 means "no
  better than always rejecting". Defaults: ``P_target = 0.05``, ``C_miss = C_fa = 1`` -- the VoxCeleb Speaker
  Recognition Challenge (VoxSRC 2020/2021) convention (NIST SRE 2008 used P_target 0.01, C_miss 10).
- Rates are fractions in [0, 1]; tables print them as percentages.

Cohort breakdown: each trial carries its enrolment speaker's attributes (``gender``, ``accent``, ...); the EER of
cohort ``g`` is computed over the trials whose enrolment speaker is in ``g`` (see :mod:`serac.speaker.trials`
for how impostors are drawn). Fairness summaries: the gender EER gap (max minus min over gender values) and the
standard deviation of EER across accent cohorts (population std, ``ddof=0``, as a spread over all cohorts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

P_TARGET = 0.05
C_MISS = 1.0
C_FA = 1.0


def _check_scores(scores: Sequence[float], is_target: Sequence[bool], name: str = "trials"
                  ) -> Tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_target, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{name}: {s.size} scores but {y.size} target labels")
    if s.size == 0:
        raise ValueError(f"{name}: empty trial list, nothing to score")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name}: {int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    if not y.any():
        raise ValueError(f"{name}: no target trials (EER needs both target and non-target trials)")
    if y.all():
        raise ValueError(f"{name}: no non-target trials (EER needs both target and non-target trials)")
    return s, y


def error_rates(scores: Sequence[float], is_target: Sequence[bool], name: str = "trials"
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, P_miss, P_fa) at every distinct score and at +inf, thresholds increasing."""
    s, y = _check_scores(scores, is_target, name)
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    thresholds, first = np.unique(s, return_index=True)
    # targets strictly below threshold k = targets among the first `first[k]` sorted scores
    tgt_below = np.concatenate([[0], np.cumsum(y)])[first]
    non_below = np.concatenate([[0], np.cumsum(~y)])[first]
    n_tgt, n_non = int(y.sum()), int((~y).sum())
    thresholds = np.append(thresholds, np.inf)
    p_miss = np.append(tgt_below, n_tgt) / n_tgt
    p_fa = (n_non - np.append(non_below, n_non)) / n_non
    return thresholds, p_miss, p_fa


def compute_eer(scores: Sequence[float], is_target: Sequence[bool], name: str = "trials") -> Tuple[float, float]:
    """(EER, threshold reaching it): the minimum over thresholds of max(P_miss, P_fa)."""
    thresholds, p_miss, p_fa = error_rates(scores, is_target, name)
    worst = np.maximum(p_miss, p_fa)
    k = int(np.argmin(worst))
    return float(worst[k]), float(thresholds[k])


def compute_min_dcf(scores: Sequence[float], is_target: Sequence[bool], p_target: float = P_TARGET,
                    c_miss: float = C_MISS, c_fa: float = C_FA, name: str = "trials") -> Tuple[float, float]:
    """(normalised minDCF, threshold reaching it)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    thresholds, p_miss, p_fa = error_rates(scores, is_target, name)
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    k = int(np.argmin(dcf))
    return float(dcf[k] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[k])


@dataclass
class SvResult:
    """EER and minDCF of one set of trials."""

    eer: float
    min_dcf: float
    num_target: int
    num_nontarget: int

    def as_dict(self) -> Dict[str, float]:
        return {"eer": self.eer, "min_dcf": self.min_dcf, "num_target": self.num_target,
                "num_nontarget": self.num_nontarget}


def score_trials(scores: Sequence[float], is_target: Sequence[bool], p_target: float = P_TARGET,
                 name: str = "trials") -> SvResult:
    y = np.asarray(is_target, dtype=bool)
    eer, _ = compute_eer(scores, y, name)
    dcf, _ = compute_min_dcf(scores, y, p_target=p_target, name=name)
    return SvResult(eer, dcf, int(y.sum()), int((~y).sum()))


def cohort_breakdown(scores: Sequence[float], is_target: Sequence[bool], cohorts: Sequence[Optional[str]],
                     p_target: float = P_TARGET, key: str = "cohort") -> Dict[str, SvResult]:
    """EER/minDCF per cohort value (trials whose cohort value is None or empty are left out)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_target, dtype=bool)
    values = np.asarray([c if c else "" for c in cohorts], dtype=object)
    if values.shape != s.shape:
        raise ValueError(f"{key}: {values.size} cohort values for {s.size} scores")
    out: Dict[str, SvResult] = {}
    for v in sorted(set(values) - {""}):
        mask = values == v
        out[v] = score_trials(s[mask], y[mask], p_target, name=f"{key}={v}")
    return out


def eer_gap(results: Mapping[str, SvResult]) -> float:
    """Max minus min EER over the cohorts (e.g. the gender EER gap)."""
    if not results:
        raise ValueError("no cohorts to compare")
    eers = [r.eer for r in results.values()]
    return float(max(eers) - min(eers))


def eer_std(results: Mapping[str, SvResult]) -> float:
    """Population standard deviation of EER across cohorts."""
    if not results:
        raise ValueError("no cohorts to compare")
    return float(np.std([r.eer for r in results.values()]))


def sv_report(scores: Sequence[float], is_target: Sequence[bool], attributes: Mapping[str, Sequence[Optional[str]]],
              p_target: float = P_TARGET) -> Dict[str, object]:
    """Overall and per-cohort metrics with gap and std per attribute, as one JSON-ready dict::

        {"overall": {...}, "p_target": 0.05, "c_miss": 1, "c_fa": 1,
         "by": {"gender": {"cohorts": {"female": {...}, ...}, "eer_gap": .., "eer_std": ..}, ...}}
    """
    report: Dict[str, object] = {"overall": score_trials(scores, is_target, p_target).as_dict(),
                                 "p_target": p_target, "c_miss": C_MISS, "c_fa": C_FA, "by": {}}
    for key, values in attributes.items():
        res = cohort_breakdown(scores, is_target, values, p_target, key=key)
        report["by"][key] = {"cohorts": {k: r.as_dict() for k, r in res.items()},
                             "eer_gap": eer_gap(res) if res else None, "eer_std": eer_std(res) if res else None}
    return report


def format_percent(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None else f"{100.0 * x:.{digits}f}"


__all__: List[str] = ["P_TARGET", "C_MISS", "C_FA", "error_rates", "compute_eer", "compute_min_dcf", "SvResult",
                      "score_trials", "cohort_breakdown", "eer_gap", "eer_std", "sv_report", "format_percent"]
