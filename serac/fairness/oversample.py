"""Training manifests for the fairness baselines: oversampling the bottom cohorts, selecting cohorts' cuts, and
duration-matched random subsets (to give every fine-tuning variant the same number of training steps).

``oversample_cuts(cuts, speakers, k)``: every cut of a speaker in ``speakers`` appears k times (the original
plus k-1 copies with ids ``<id>_rep<j>``, j = 1..k-1); every other cut once. Copies are identical except for
the id (lhotse samplers need unique ids).
"""
from __future__ import annotations

import random
from typing import Callable, Collection, Iterable, List, Optional

from lhotse import CutSet


def _speaker(cut) -> Optional[str]:
    return cut.supervisions[0].speaker if cut.supervisions else None


def oversample_cuts(cuts: Iterable, speakers: Collection[str], k: int) -> CutSet:
    """The cuts, with those of ``speakers`` repeated k times in all (k >= 1); order: each cut followed by its
    copies."""
    if k < 1:
        raise ValueError(f"oversampling factor must be >= 1, got {k}")
    speakers = set(speakers)
    out = []
    for cut in cuts:
        out.append(cut)
        if _speaker(cut) in speakers:
            out.extend(cut.with_id(f"{cut.id}_rep{j}") for j in range(1, k))
    return CutSet.from_cuts(out)


def select_speakers(cuts: Iterable, speakers: Collection[str]) -> CutSet:
    speakers = set(speakers)
    return CutSet.from_cuts([c for c in cuts if _speaker(c) in speakers])


def sample_by_duration(cuts: Iterable, total_duration: float, seed: int = 0,
                       key: Optional[Callable] = None) -> CutSet:
    """A seeded random subset whose total duration first reaches ``total_duration`` seconds (all the cuts if
    they last less). The draw does not depend on the manifest's order (cuts are sorted by id first)."""
    pool: List = sorted(cuts, key=key or (lambda c: c.id))
    random.Random(seed).shuffle(pool)
    out, acc = [], 0.0
    for cut in pool:
        if acc >= total_duration:
            break
        out.append(cut)
        acc += cut.duration
    return CutSet.from_cuts(out)


def total_duration(cuts: Iterable) -> float:
    return float(sum(c.duration for c in cuts))
