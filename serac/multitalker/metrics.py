"""Multi-talker scoring: cpWER and ORC-WER (through meeteval), turn counting, turn-boundary emission latency, and
speaker-bootstrap intervals.

- **cpWER** (concatenated minimum-permutation WER, CHiME-6): each reference speaker's words and each hypothesis
  stream's words are concatenated, and the WER is taken under the best one-to-one mapping of streams to speakers.
  An STS / MT-RNN-T system has no speaker identities, only channels, so its streams are its channels: cpWER then
  charges a speaker whose turns the system spread over both channels.
- **ORC-WER** (optimal reference combination): each reference turn goes to whichever hypothesis channel makes the
  total errors smallest -- the metric for channel outputs that are not speakers (Neumann et al. 2023).
- **turn-counting accuracy**: the share of conversations whose number of emitted turns (over all channels) equals
  the number of reference turns.
- **emission latency** of ``<sot>`` / ``<eot>``: emission time minus the reference turn start / end, in ms, over
  reference turns matched one-to-one to emitted turns (Hungarian assignment on the summed start and end offsets,
  pairs whose offset exceeds ``max_offset_s`` are not matched); reported as median and 90th percentile (numpy's
  linear interpolation). Negative: emitted before the reference boundary.
- **speaker bootstrap**: resample the test speakers with replacement (serac.fairness's
  :func:`bootstrap_wer_interval`); a conversation's errors are shared among its reference speakers in proportion
  to their reference words (neither metric attributes errors to speakers on its own: an ORC-WER turn's errors
  depend on the other turns on its channel).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from serac.fairness.cohort_metrics import bootstrap_wer_interval
from serac.multitalker.simulate import Turn


@dataclass(frozen=True)
class HypSegment:
    """One emitted turn: its stream (channel, or speaker for a diarizing system), words and times (s)."""

    stream: str
    words: str
    start: float
    end: float


@dataclass
class MultiTalkerWer:
    """Pooled errors of one metric over conversations, and each conversation's (errors, reference words)."""

    metric: str
    errors: int
    length: int
    insertions: int
    deletions: int
    substitutions: int
    per_conversation: Dict[str, Tuple[int, int]] = field(default_factory=dict)

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / self.length if self.length else float("nan")


def _check_sessions(refs: Mapping[str, Sequence[Turn]], hyps: Mapping[str, Sequence[HypSegment]]) -> None:
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if missing or extra:
        raise ValueError(f"conversations without a hypothesis: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                         f"hypotheses without a reference: {extra[:5]}{'...' if len(extra) > 5 else ''}")


def to_seglst(refs: Mapping[str, Sequence[Turn]], hyps: Mapping[str, Sequence[HypSegment]]):
    """The reference and hypothesis as meeteval SegLSTs (one segment per turn)."""
    from meeteval.io import SegLST

    ref = SegLST([{"session_id": cid, "speaker": t.speaker, "words": t.text, "start_time": t.start,
                   "end_time": t.end} for cid, turns in refs.items() for t in turns])
    hyp = SegLST([{"session_id": cid, "speaker": h.stream, "words": h.words, "start_time": h.start,
                   "end_time": h.end} for cid, segs in hyps.items() for h in segs])
    return ref, hyp


def multitalker_wer(refs: Mapping[str, Sequence[Turn]], hyps: Mapping[str, Sequence[HypSegment]],
                    metric: str = "cpwer") -> MultiTalkerWer:
    """cpWER or ORC-WER (``metric``: "cpwer" or "orcwer") of every conversation in ``refs`` (each must have an
    entry in ``hyps``, possibly empty), computed by meeteval."""
    from meeteval.wer import api

    if metric not in ("cpwer", "orcwer"):
        raise ValueError(f"metric must be cpwer or orcwer, got {metric!r}")
    _check_sessions(refs, hyps)
    # a conversation where nothing was emitted gets one empty segment: meeteval scores it as all deletions
    # (a conversation missing from the hypothesis it would take for a system that skipped recordings)
    hyps = {cid: [h for h in segs if h.words.strip()] or [HypSegment("0", "", 0.0, 0.0)] for cid, segs in hyps.items()}
    ref, hyp = to_seglst(refs, hyps)
    per_session = getattr(api, metric)(ref, hyp)
    out = MultiTalkerWer(metric, 0, 0, 0, 0, 0)
    for cid in refs:
        r = per_session[cid]
        out.errors += r.errors
        out.length += r.length
        out.insertions += r.insertions
        out.deletions += r.deletions
        out.substitutions += r.substitutions
        out.per_conversation[cid] = (int(r.errors), int(r.length))
    return out


def turn_counting_accuracy(refs: Mapping[str, Sequence[Turn]], hyp_turn_counts: Mapping[str, int]) -> float:
    """Percentage of conversations whose emitted turn count equals their reference turn count."""
    if not refs:
        raise ValueError("no conversations to score")
    missing = sorted(set(refs) - set(hyp_turn_counts))
    if missing:
        raise ValueError(f"no emitted turn count for conversations {missing[:5]}")
    return 100.0 * sum(len(refs[c]) == hyp_turn_counts[c] for c in refs) / len(refs)


@dataclass(frozen=True)
class EmittedTurn:
    """An emitted turn's boundary times (s): when ``<sot>`` / ``<eot>`` came out (None if they did not)."""

    sot_s: Optional[float]
    eot_s: Optional[float]


@dataclass
class TurnLatency:
    """Emission latencies (ms) of matched turns: ``start_ms`` for ``<sot>``, ``end_ms`` for ``<eot>``."""

    start_ms: List[float] = field(default_factory=list)
    end_ms: List[float] = field(default_factory=list)
    num_ref_turns: int = 0
    num_matched: int = 0

    def summary(self) -> Dict[str, float]:
        def stat(values: List[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else float("nan")

        return {"start_median_ms": stat(self.start_ms, 50), "start_p90_ms": stat(self.start_ms, 90),
                "end_median_ms": stat(self.end_ms, 50), "end_p90_ms": stat(self.end_ms, 90),
                "matched_turns": self.num_matched, "ref_turns": self.num_ref_turns}


def match_turns(ref: Sequence[Turn], hyp: Sequence[EmittedTurn], max_offset_s: float = 2.0) -> List[Tuple[int, int]]:
    """One-to-one (ref index, hyp index) pairs minimising the summed |boundary offsets|; a pair is allowed only
    when each boundary the hypothesis emitted lies within ``max_offset_s`` of the reference's."""
    from scipy.optimize import linear_sum_assignment

    if not ref or not hyp:
        return []
    big = 1e9
    cost = np.full((len(ref), len(hyp)), big)
    for i, r in enumerate(ref):
        for j, h in enumerate(hyp):
            offsets = [abs(t - b) for t, b in ((h.sot_s, r.start), (h.eot_s, r.end)) if t is not None]
            if offsets and max(offsets) <= max_offset_s:
                cost[i, j] = sum(offsets) + (2 - len(offsets)) * max_offset_s  # a missing boundary costs the gate
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < big]


def turn_latency(refs: Mapping[str, Sequence[Turn]], hyps: Mapping[str, Sequence[EmittedTurn]],
                 max_offset_s: float = 2.0) -> TurnLatency:
    """Start- and end-of-turn emission latencies over all conversations (module docstring)."""
    out = TurnLatency()
    for cid, ref in refs.items():
        hyp = list(hyps.get(cid, []))
        out.num_ref_turns += len(ref)
        for i, j in match_turns(ref, hyp, max_offset_s):
            out.num_matched += 1
            if hyp[j].sot_s is not None:
                out.start_ms.append(1000.0 * (hyp[j].sot_s - ref[i].start))
            if hyp[j].eot_s is not None:
                out.end_ms.append(1000.0 * (hyp[j].eot_s - ref[i].end))
    return out


def speaker_errors(refs: Mapping[str, Sequence[Turn]], per_conversation: Mapping[str, Tuple[int, int]]
                   ) -> Dict[str, Tuple[float, int]]:
    """(errors, reference words) per reference speaker: each conversation's errors shared among its speakers in
    proportion to their reference words."""
    totals: Dict[str, List[float]] = {}
    for cid, turns in refs.items():
        errors, _ = per_conversation[cid]
        words: Dict[str, int] = {}
        for t in turns:
            words[t.speaker] = words.get(t.speaker, 0) + len(t.text.split())
        conv_words = sum(words.values())
        for spk, n in words.items():
            share = errors * n / conv_words if conv_words else errors / len(words)
            acc = totals.setdefault(spk, [0.0, 0])
            acc[0] += share
            acc[1] += n
    return {spk: (e, int(n)) for spk, (e, n) in sorted(totals.items())}


def speaker_bootstrap_interval(by_speaker: Mapping[str, Tuple[float, int]], n_bootstrap: int = 1000,
                               seed: int = 0, confidence: float = 0.95) -> Tuple[float, float]:
    """Percentile interval (%) of the pooled WER when resampling speakers (serac.fairness's bootstrap)."""
    errors = np.array([e for e, _ in by_speaker.values()], dtype=np.float64)
    words = np.array([n for _, n in by_speaker.values()], dtype=np.float64)
    return bootstrap_wer_interval(errors, words, n_bootstrap, np.random.default_rng(seed), confidence)


def paired_speaker_bootstrap_difference(system: Mapping[str, Tuple[float, int]],
                                        baseline: Mapping[str, Tuple[float, int]], n_bootstrap: int = 1000,
                                        seed: int = 0, confidence: float = 0.95) -> Tuple[float, float]:
    """Percentile interval of WER(system) - WER(baseline), in absolute points, resampling the same speakers for
    both systems (they must have been scored on the same conversations)."""
    if set(system) != set(baseline):
        raise ValueError("paired bootstrap: the two systems were scored on different speakers")
    speakers = sorted(system)
    words = np.array([system[s][1] for s in speakers], dtype=np.float64)
    if any(system[s][1] != baseline[s][1] for s in speakers):
        raise ValueError("paired bootstrap: the two systems have different reference word counts")
    err_a = np.array([system[s][0] for s in speakers], dtype=np.float64)
    err_b = np.array([baseline[s][0] for s in speakers], dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(speakers), size=(n_bootstrap, len(speakers)))
    drawn_words = words[draws].sum(1)
    keep = drawn_words > 0
    diff = 100.0 * (err_a[draws].sum(1) - err_b[draws].sum(1))[keep] / drawn_words[keep]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diff, [tail, 1.0 - tail])
    return float(low), float(high)


def channel_hypotheses(channels: Sequence[Tuple[Sequence[int], Sequence[float]]], tokenizer
                       ) -> Tuple[List[HypSegment], List[EmittedTurn]]:
    """One conversation's decoded channels -- (token ids, emission times in s) per channel -- as the inputs of
    :func:`multitalker_wer` (one segment per emitted turn, stream = channel index) and of :func:`turn_latency`.
    A segment's times are its ``<sot>`` / ``<eot>`` emissions, or, where one is missing, its first / last word's
    (meeteval orders a channel's segments by start time)."""
    from serac.multitalker.targets import split_turns, turn_token_ids

    sot_id, eot_id = turn_token_ids(tokenizer)
    segments: List[HypSegment] = []
    emitted: List[EmittedTurn] = []
    for c, (ids, times) in enumerate(channels):
        for turn in split_turns(ids, times, sot_id, eot_id, channel=c):
            emitted.append(EmittedTurn(turn.sot_s, turn.eot_s))
            times = [t for t in (turn.sot_s, *turn.token_times_s, turn.eot_s) if t is not None]
            start = turn.sot_s if turn.sot_s is not None else min(times, default=0.0)
            end = turn.eot_s if turn.eot_s is not None else max(times, default=start)
            segments.append(HypSegment(str(c), tokenizer.decode(turn.token_ids), start, end))
    return segments, emitted
