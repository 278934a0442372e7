"""Simulated conversations: single-speaker cuts mixed with offsets into multi-party lhotse ``MixedCut`` s.

A conversation has two or more speakers taking turns; each turn is one source utterance (one supervision with
its speaker and words) placed at a start time in the mixture. Between consecutive turns there is either a pause
or an overlap; at most two talkers are ever active at once.

How the turns are placed (one conversation, all draws from ``default_rng([seed, index])`` so that conversation
``index`` is the same whatever the number of jobs):

1. draw the number of speakers and of turns from their ranges, the speakers from the split's pool, and the turn
   order (the next speaker is any speaker but the current one), then one utterance of that speaker per turn
   (without repeats within a conversation while the speaker has unused utterances);
2. draw the conversation's target overlap ratio ``r`` from ``overlap_ratios`` (default LibriCSS's bins 0, 10, 20,
   30, 40%) -- overlapped time over speaking time, so the total overlap to place is ``r * D / (1 + r)`` for ``D``
   seconds of turns -- and split it over the turn changes with Dirichlet(1) weights;
3. place the turns in order. A turn may start no earlier than the previous turn's start and the end of every
   turn but the latest-ending one (so it overlaps at most one turn: never three talkers), and overlaps that turn
   by its share (plus what earlier turn changes could not place), capped by what those limits and its own
   duration allow; with no overlap it starts after a pause drawn from ``pause_range_s``.

The ratio reached is usually the target (short turns can leave it below); :func:`overlap_ratio` measures it on
the supervisions, which is what scoring by overlap bin uses.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut, MixedCut, MixTrack


@dataclass
class ConversationConfig:
    """The distributions conversations are drawn from (the defaults make short two-party conversations)."""

    speakers: Tuple[int, int] = (2, 2)        #: min, max speakers per conversation (inclusive)
    turns: Tuple[int, int] = (3, 6)           #: min, max turns per conversation (inclusive)
    overlap_ratios: Sequence[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4])
    pause_range_s: Tuple[float, float] = (0.1, 1.0)  #: a pause between non-overlapping turns: uniform in this range

    def __post_init__(self) -> None:
        if not 2 <= self.speakers[0] <= self.speakers[1]:
            raise ValueError(f"speakers range must satisfy 2 <= min <= max, got {self.speakers}")
        if not 1 <= self.turns[0] <= self.turns[1]:
            raise ValueError(f"turns range must satisfy 1 <= min <= max, got {self.turns}")
        if not self.overlap_ratios or any(not 0.0 <= r < 1.0 for r in self.overlap_ratios):
            raise ValueError(f"overlap_ratios must be non-empty values in [0, 1), got {list(self.overlap_ratios)}")
        if not 0.0 <= self.pause_range_s[0] <= self.pause_range_s[1]:
            raise ValueError(f"pause_range_s must satisfy 0 <= min <= max, got {self.pause_range_s}")


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: who, what, and when (seconds in the mixture)."""

    id: str
    speaker: str
    text: str
    start: float
    end: float


def _single_supervision(cut: Cut) -> None:
    if len(cut.supervisions) != 1:
        raise ValueError(f"cut {cut.id}: a conversation turn needs exactly one supervision, it has "
                         f"{len(cut.supervisions)}")
    sup = cut.supervisions[0]
    if not sup.speaker:
        raise ValueError(f"cut {cut.id}: supervision {sup.id} has no speaker")
    if sup.text is None or not sup.text.strip():
        raise ValueError(f"cut {cut.id}: supervision {sup.id} has no text")


def cuts_by_speaker(cuts: Iterable[Cut]) -> Dict[str, List[Cut]]:
    """Group single-supervision cuts by speaker, each speaker's cuts sorted by id (the order draws refer to)."""
    groups: Dict[str, List[Cut]] = {}
    for cut in cuts:
        _single_supervision(cut)
        groups.setdefault(cut.supervisions[0].speaker, []).append(cut)
    for spk in groups:
        groups[spk].sort(key=lambda c: c.id)
    return dict(sorted(groups.items()))


def check_disjoint_speakers(speakers_by_split: Mapping[str, Iterable[str]]) -> None:
    """Raise when a speaker occurs in two splits (train/dev/test conversations must not share speakers)."""
    seen: Dict[str, str] = {}
    for split, speakers in speakers_by_split.items():
        for spk in speakers:
            if spk in seen and seen[spk] != split:
                raise ValueError(f"speaker {spk} occurs in both split {seen[spk]} and split {split}: conversation "
                                 f"splits must have disjoint speakers")
            seen[spk] = split


def place_turns(durations: Sequence[float], overlap_ratio: float, pause_range_s: Tuple[float, float],
                rng: np.random.Generator) -> List[float]:
    """Start times of turns of the given durations (in order), overlapping at most two at a time (module doc)."""
    n = len(durations)
    if n == 0:
        return []
    total = float(sum(durations))
    budget = overlap_ratio * total / (1.0 + overlap_ratio)
    shares = rng.dirichlet(np.ones(n - 1)) * budget if n > 1 and budget > 0 else np.zeros(max(n - 1, 0))
    starts = [0.0]
    ends = [float(durations[0])]
    carry = 0.0
    for k in range(1, n):
        order = sorted(ends)
        latest_end = order[-1]
        second_end = order[-2] if len(order) > 1 else 0.0
        earliest = max(second_end, starts[-1])
        room = max(0.0, min(latest_end - earliest, float(durations[k])))
        want = float(shares[k - 1]) + carry
        overlap = min(want, room)
        carry = want - overlap
        pause = float(rng.uniform(*pause_range_s))  # drawn on every turn change: the draws do not depend on room
        start = latest_end - overlap if overlap > 1e-3 else latest_end + pause
        starts.append(math.ceil(start * 1000.0) / 1000.0)  # ms grid, never earlier than allowed
        ends.append(starts[-1] + float(durations[k]))
    return starts


def overlap_ratio(turns: Sequence[Tuple[float, float]]) -> float:
    """Time with two or more talkers over time with at least one, from (start, end) intervals."""
    events = sorted([(s, 1) for s, _ in turns] + [(e, -1) for _, e in turns], key=lambda x: (x[0], x[1]))
    active = 0
    last = None
    speech = overlapped = 0.0
    for t, delta in events:
        if last is not None and active > 0:
            speech += t - last
            if active > 1:
                overlapped += t - last
        active += delta
        last = t
    return overlapped / speech if speech > 0 else 0.0


def max_active_talkers(turns: Sequence[Tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in turns] + [(e, -1) for _, e in turns], key=lambda x: (x[0], x[1]))
    active = peak = 0
    for _, delta in events:
        active += delta
        peak = max(peak, active)
    return peak


def conversation_turns(cut: Cut) -> List[Turn]:
    """The turns of a conversation cut (its supervisions), sorted by start time."""
    turns = [Turn(id=s.id, speaker=s.speaker, text=s.text or "", start=round(s.start, 3), end=round(s.end, 3))
             for s in cut.supervisions]
    return sorted(turns, key=lambda t: (t.start, t.end, t.id))


def simulate_conversation(by_speaker: Mapping[str, Sequence[Cut]], index: int, seed: int,
                          config: ConversationConfig, id_prefix: str = "conv") -> Cut:
    """Conversation number ``index`` (a ``MixedCut`` with one supervision per turn); depends only on
    (``by_speaker``, ``index``, ``seed``, ``config``)."""
    rng = np.random.default_rng([int(seed), int(index)])
    speakers = sorted(by_speaker)
    lo, hi = config.speakers
    if len(speakers) < lo:
        raise ValueError(f"{id_prefix}: {len(speakers)} speakers available, conversations need at least {lo}")
    num_speakers = int(rng.integers(lo, min(hi, len(speakers)) + 1))
    chosen = [speakers[i] for i in sorted(rng.choice(len(speakers), size=num_speakers, replace=False))]
    num_turns = int(rng.integers(config.turns[0], config.turns[1] + 1))
    unused = {spk: list(range(len(by_speaker[spk]))) for spk in chosen}
    picked: List[Cut] = []
    previous: Optional[str] = None
    for _ in range(num_turns):
        candidates = [s for s in chosen if s != previous]
        spk = candidates[int(rng.integers(len(candidates)))]
        if not unused[spk]:  # the speaker said everything once: repeats are allowed from here on
            unused[spk] = list(range(len(by_speaker[spk])))
        picked.append(by_speaker[spk][unused[spk].pop(int(rng.integers(len(unused[spk]))))])
        previous = spk
    ratio = float(config.overlap_ratios[int(rng.integers(len(config.overlap_ratios)))])
    starts = place_turns([c.duration for c in picked], ratio, config.pause_range_s, rng)
    conv_id = f"{id_prefix}{index:06d}"
    # tracks at their offsets, the gaps silent: built directly rather than by Cut.mix, whose padding cuts get
    # random ids (the manifests would differ from run to run)
    mixed = MixedCut(id=conv_id, tracks=[MixTrack(cut=cut, offset=start) for cut, start in zip(picked, starts)])
    peak = max_active_talkers([(t.start, t.end) for t in conversation_turns(mixed)])
    if peak > 2:  # place_turns guarantees this; a bug here must not produce silently wrong data
        raise AssertionError(f"{conv_id}: {peak} talkers active at once")
    return mixed


def simulate_conversations(cuts: Iterable[Cut], num_conversations: int, seed: int, config: ConversationConfig,
                           id_prefix: str = "conv", job: int = 1, nj: int = 1) -> CutSet:
    """Conversations ``index`` with ``index % nj == job - 1`` (all of them with the defaults), sorted by id.
    Conversation ``index`` is the same in every sharding, so merging the shards of any ``nj`` gives the same set."""
    if not 1 <= job <= nj:
        raise ValueError(f"job must be in 1..nj={nj}, got {job}")
    by_speaker = cuts_by_speaker(cuts)
    if not by_speaker:
        raise ValueError(f"{id_prefix}: no source cuts")
    convs = [simulate_conversation(by_speaker, i, seed, config, id_prefix)
             for i in range(num_conversations) if i % nj == job - 1]
    logging.info(f"{id_prefix}: {len(convs)} conversations from {len(by_speaker)} speakers (job {job}/{nj})")
    return CutSet.from_cuts(convs)
