"""Speaker-verification trial lists over held-out speakers, balanced by cohort.

A trial compares an enrolment utterance with a test utterance (one utterance each side); it is a *target* trial
when both come from the same speaker. Lists are built so that cohorts can be compared fairly:

1. Speaker selection (``select_balanced_speakers``): the same number of speakers from every accent and, over the
   whole selection, as many women as men (within each accent as even as the other accents allow: an accent with
   no male held-out speaker is compensated by more men in another accent). A seeded random choice within each
   (accent, gender) cell; a clear error when no such selection exists.
2. Trials (``make_trials``): every selected speaker contributes the same number of target trials (pairs of its
   own utterances) and the same number of non-target trials (one of its utterances against an utterance of an
   impostor). Impostors are drawn from the selected speakers who share the enrolment speaker's
   ``impostor_match`` attributes (default: same gender, the usual "hard" convention of VoxCeleb1-H), so a
   cohort's EER is not flattered by easy cross-gender impostors.

Hence each gender and each accent gets exactly the same numbers of target and non-target trials, and the cohort
EERs of :mod:`serac.speaker.metrics` (computed over the trials of each cohort's enrolment speakers) compare like
with like.

Trial files are TSV with a header: ``label enrol test enrol_speaker test_speaker <attribute columns...>`` where
``label`` is 1 (target) or 0 and the attribute columns are the enrolment speaker's (``gender``, ``accent``, ...).
"""
from __future__ import annotations

import csv
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from serac.utils import atomic_path


@dataclass
class Trial:
    target: bool
    enrol: str
    test: str
    enrol_speaker: str
    test_speaker: str
    attributes: Dict[str, str] = field(default_factory=dict)  # the enrolment speaker's cohort attributes


def select_balanced_speakers(speaker_attributes: Mapping[str, Mapping[str, str]],
                             keys: Sequence[str] = ("accent", "gender"), per_value: Optional[int] = None,
                             seed: int = 0) -> List[str]:
    """Speakers drawn so that every value of ``keys[0]`` (accent) has the same number of speakers, ``n``, and --
    when a second key is given -- every value of ``keys[1]`` (gender) has the same total over the selection.

    ``n`` defaults to the largest number that allows both (at most the smallest accent's speaker count). Within an
    accent the genders are as even as the other accents allow (an accent with no men is compensated by more men
    elsewhere). Raises ValueError naming a speaker without one of the attributes, or when no balanced selection
    exists.
    """
    if not speaker_attributes:
        raise ValueError("no speakers to select from")
    if not 1 <= len(keys) <= 2:
        raise ValueError(f"balance by one or two attributes, got {list(keys)}")
    groups: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    for spk in sorted(speaker_attributes):
        attrs = speaker_attributes[spk]
        missing = [k for k in keys if not attrs.get(k)]
        if missing:
            raise ValueError(f"speaker {spk}: no value for {', '.join(missing)} (needed to balance trials)")
        groups[str(attrs[keys[0]])][str(attrs[keys[1]]) if len(keys) == 2 else ""].append(spk)
    rng = random.Random(seed)
    for g in groups.values():  # a seeded shuffle: which speakers of a cell are used
        for cell in g.values():
            rng.shuffle(cell)
    second_values = sorted({v for g in groups.values() for v in g})
    smallest = min(sum(len(c) for c in g.values()) for g in groups.values())
    candidates = [per_value] if per_value is not None else list(range(smallest, 0, -1))
    for n in candidates:
        if n < 1 or n > smallest:
            raise ValueError(f"per_value {per_value} must be between 1 and the smallest {keys[0]} speaker count "
                             f"{smallest}")
        counts = _balanced_counts(groups, second_values, n)
        if counts is not None:
            return sorted(spk for a, g in groups.items() for v, cell in g.items() for spk in cell[:counts[a][v]])
    what = f"{len(second_values)} {keys[1]} values ({', '.join(second_values)}) equally" if len(keys) == 2 else ""
    raise ValueError(f"cannot select the same number of held-out speakers per {keys[0]} with {what}"
                     f"{' ' if what else ''}(per_value {per_value}); cells: "
                     + "; ".join(f"{a}: " + ", ".join(f"{v}={len(c)}" for v, c in sorted(g.items()))
                                 for a, g in sorted(groups.items())))


def _balanced_counts(groups: Mapping[str, Mapping[str, List[str]]], values: Sequence[str], n: int
                     ) -> Optional[Dict[str, Dict[str, int]]]:
    """Per (first value, second value): how many speakers to take, n per first value and equal totals per second
    value; None when this greedy allocation (least flexible first value first) finds none."""
    total = n * len(groups)
    if total % len(values):
        return None
    quota = {v: total // len(values) for v in values}
    counts: Dict[str, Dict[str, int]] = {}
    for a in sorted(groups, key=lambda a: (sum(1 for v in values if groups[a].get(v)), a)):
        avail = {v: len(groups[a].get(v, [])) for v in values}
        take = {v: 0 for v in values}
        for _ in range(n):
            open_values = [v for v in values if take[v] < avail[v]]
            if not open_values:
                return None
            v = max(open_values, key=lambda v: (quota[v], -values.index(v)))
            take[v] += 1
            quota[v] -= 1
        counts[a] = take
    return counts if all(q == 0 for q in quota.values()) else None


def make_trials(utterances: Mapping[str, Sequence[str]], speaker_attributes: Mapping[str, Mapping[str, str]],
                speakers: Optional[Sequence[str]] = None, num_target_per_speaker: int = 10,
                num_nontarget_per_speaker: int = 20, impostor_match: Sequence[str] = ("gender",),
                attribute_keys: Optional[Sequence[str]] = None, seed: int = 0, equal_target_counts: bool = True
                ) -> List[Trial]:
    """Target and non-target trials, the same numbers for every speaker (see the module docstring).

    ``utterances``: speaker -> utterance ids. ``speakers``: the speakers to use (default: all). The number of
    target trials per speaker is ``min(num_target_per_speaker, fewest utterance pairs of any speaker)`` so the
    list stays balanced (``equal_target_counts=False``: each speaker's own pair count caps its number instead, for
    an evaluation set where one speaker lacks a recording). Raises ValueError naming a speaker with fewer than two utterances (no target trial
    possible) or with no impostor sharing its ``impostor_match`` attributes.
    """
    speakers = sorted(utterances) if speakers is None else list(speakers)
    if len(speakers) < 2:
        raise ValueError(f"need at least two speakers for trials, got {len(speakers)}")
    for spk in speakers:
        n = len(utterances.get(spk, ()))
        if n < 2:
            raise ValueError(f"speaker {spk} has {n} utterance(s): a target trial needs two utterances of the "
                             "same speaker")
    attribute_keys = list(attribute_keys) if attribute_keys is not None else sorted(
        {k for s in speakers for k in speaker_attributes.get(s, {})})
    min_pairs = min(len(utterances[s]) * (len(utterances[s]) - 1) // 2 for s in speakers)
    n_target = min(num_target_per_speaker, min_pairs)
    rng = random.Random(seed)

    def attrs(spk: str) -> Dict[str, str]:
        a = speaker_attributes.get(spk, {})
        return {k: str(a.get(k, "")) for k in attribute_keys}

    def match_key(spk: str) -> Tuple[str, ...]:
        return tuple(str(speaker_attributes.get(spk, {}).get(k, "")) for k in impostor_match)

    trials: List[Trial] = []
    for spk in speakers:
        utts = sorted(utterances[spk])
        pairs = list(itertools.combinations(utts, 2))
        for a, b in sorted(rng.sample(pairs, n_target if equal_target_counts
                                      else min(num_target_per_speaker, len(pairs)))):
            trials.append(Trial(True, a, b, spk, spk, attrs(spk)))
        impostors = [s for s in speakers if s != spk and match_key(s) == match_key(spk)]
        if not impostors:
            desc = ", ".join(f"{k}={v}" for k, v in zip(impostor_match, match_key(spk)))
            raise ValueError(f"speaker {spk}: no other speaker with {desc} to draw impostors from")
        candidates = [(a, imp, b) for a in utts for imp in impostors for b in sorted(utterances[imp])]
        k = num_nontarget_per_speaker
        chosen = rng.sample(candidates, k) if k <= len(candidates) else [rng.choice(candidates) for _ in range(k)]
        for a, imp, b in sorted(chosen):
            trials.append(Trial(False, a, b, spk, imp, attrs(spk)))
    return trials


def utterance_id(cut) -> str:
    """The id an utterance has in trial lists and embedding files: its supervision's id (stable when feature
    extraction renames cuts, e.g. lhotse's trim_to_supervisions appends a suffix), else the cut's."""
    return cut.supervisions[0].id if cut.supervisions else cut.id


def write_trials(trials: Sequence[Trial], path: str | Path) -> None:
    if not trials:
        raise ValueError(f"{path}: refusing to write an empty trial list")
    keys = list(trials[0].attributes)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["label", "enrol", "test", "enrol_speaker", "test_speaker", *keys])
        for t in trials:
            w.writerow([int(t.target), t.enrol, t.test, t.enrol_speaker, t.test_speaker,
                        *[t.attributes.get(k, "") for k in keys]])


def read_trials(path: str | Path) -> List[Trial]:
    """Trials from a TSV written by :func:`write_trials`; raises ValueError for an empty list or bad rows."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: empty trial file")
    header = rows[0]
    if header[:5] != ["label", "enrol", "test", "enrol_speaker", "test_speaker"]:
        raise ValueError(f"{path}: not a trial file (header {header[:5]})")
    keys = header[5:]
    trials = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header) or row[0] not in ("0", "1"):
            raise ValueError(f"{path}:{n}: bad trial row {row!r}")
        trials.append(Trial(row[0] == "1", row[1], row[2], row[3], row[4], dict(zip(keys, row[5:]))))
    if not trials:
        raise ValueError(f"{path}: empty trial list (header only)")
    return trials


def trial_counts(trials: Sequence[Trial], key: str) -> Dict[str, Tuple[int, int]]:
    """cohort value -> (target trials, non-target trials)."""
    counts: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
    for t in trials:
        counts[t.attributes.get(key, "")][0 if t.target else 1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(counts.items())}
