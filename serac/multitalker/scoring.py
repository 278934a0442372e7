"""Scoring a multi-talker decode (``hyps-<set>-<suffix>.jsonl``, serac/multitalker/decode.py) against the
conversation cuts: cpWER and ORC-WER (meeteval) with speaker-bootstrap 95% intervals, turn-counting accuracy
(conversation-bootstrap interval), and ``<sot>`` / ``<eot>`` emission latency (median, p90, ms), overall and per
overlap-ratio bin. The definitions are serac/multitalker/metrics.py's.

Turns are read from each channel by its turn tokens (:func:`serac.multitalker.targets.split_turns`), or, for a
model trained without them (the MT-RNN-T baseline, ``gap_s`` set), by silence: a new turn starts when more than
``gap_s`` seconds pass between two emissions on a channel; the turn's start is its first token's emission and its
end is declared ``gap_s`` after its last token (when a segmenter waiting for silence would know), so the latencies
of both kinds of system are when each system *says* a turn started or ended.

Overlap-ratio bins: each conversation goes to the bin (of ``bins``, default LibriCSS's 0, 10, 20, 30, 40%) nearest
to its measured overlap ratio (:func:`serac.multitalker.simulate.overlap_ratio` on its reference turns). With
``group_by`` set, the rows are instead the values of that custom field of the cuts (LibriCSS windows: their
recording condition 0L, 0S, OV10 ... OV40, which is how LibriCSS results are reported); a cut without it is an error.

``score_decode`` returns one JSON-able dict; :func:`paired_differences` compares two of them on the same
conversations (paired speaker bootstrap for the WERs, paired conversation bootstrap for turn counting and for the
median end-of-turn latency).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from serac.multitalker.decode import ConversationHyp
from serac.multitalker.metrics import (EmittedTurn, HypSegment, channel_hypotheses, match_turns, multitalker_wer,
                                       paired_speaker_bootstrap_difference, speaker_bootstrap_interval,
                                       speaker_errors, turn_latency)
from serac.multitalker.simulate import Turn, conversation_turns, overlap_ratio
from serac.multitalker.targets import TURN_TOKENS, HypTurn
from serac.utils import atomic_write_text

METRICS = ("cpwer", "orcwer")
DEFAULT_BINS = (0.0, 0.1, 0.2, 0.3, 0.4)


@dataclass
class ScoreOptions:
    bins: Sequence[float] = DEFAULT_BINS
    gap_s: Optional[float] = None          #: segment turns by silence (a model without turn tokens)
    max_offset_s: float = 2.0              #: latency matching gate (serac.multitalker.metrics.match_turns)
    n_bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    group_by: Optional[str] = None         #: rows by this custom field of the cuts instead of overlap-ratio bins
    extra: Dict[str, Any] = field(default_factory=dict)


def gap_turns(ids: Sequence[int], times_s: Sequence[float], gap_s: float, channel: int = 0,
              skip: Sequence[int] = ()) -> List[HypTurn]:
    """One channel's tokens cut into turns at gaps of more than ``gap_s`` between emissions (module docstring);
    tokens in ``skip`` (turn tokens, if any) are dropped first."""
    turns: List[HypTurn] = []
    last = None
    for tok, t in zip(ids, times_s):
        if tok in skip:
            continue
        if last is None or t - last > gap_s:
            if turns:
                turns[-1].eot_s = round(last + gap_s, 4)
            turns.append(HypTurn(channel, [], float(t), None))
        turns[-1].token_ids.append(int(tok))
        turns[-1].token_times_s.append(float(t))
        last = t
    if turns:
        turns[-1].eot_s = round(last + gap_s, 4)
    return turns


def conversation_outputs(hyp: ConversationHyp, tokenizer, gap_s: Optional[float] = None
                         ) -> Tuple[List[HypSegment], List[EmittedTurn]]:
    """(segments for the WERs, emitted turns for counting and latency) of one decoded conversation."""
    channels = [(ch.ids, ch.times) for ch in hyp.channels]
    if gap_s is None:
        return channel_hypotheses(channels, tokenizer)
    skip = [tokenizer.token2id[t] for t in TURN_TOKENS if t in tokenizer.token2id]
    segments, emitted = [], []
    for c, (ids, times) in enumerate(channels):
        for turn in gap_turns(ids, times, gap_s, c, skip):
            emitted.append(EmittedTurn(turn.sot_s, turn.eot_s))
            segments.append(HypSegment(str(c), tokenizer.decode(turn.token_ids), turn.sot_s, turn.eot_s))
    return segments, emitted


def nearest_bin(ratio: float, bins: Sequence[float]) -> float:
    return float(min(bins, key=lambda b: (abs(b - ratio), b)))


def bin_name(b: float) -> str:
    return f"{100 * b:g}%"


def _conversation_interval(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator,
                           confidence: float) -> Tuple[float, float]:
    """Percentile interval of the mean of ``values`` (one per conversation) when resampling conversations."""
    draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[draws].mean(1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def score_group(refs: Mapping[str, Sequence[Turn]], segments: Mapping[str, List[HypSegment]],
                emitted: Mapping[str, List[EmittedTurn]], options: ScoreOptions) -> Dict[str, Any]:
    """Every number of one set of conversations (one row of the table)."""
    row: Dict[str, Any] = {"conversations": len(refs), "ref_turns": sum(len(t) for t in refs.values()),
                           "speakers": len({t.speaker for turns in refs.values() for t in turns})}
    by_speaker: Dict[str, Dict[str, Tuple[float, int]]] = {}
    for metric in METRICS:
        wer = multitalker_wer(refs, {c: segments[c] for c in refs}, metric)
        spk = speaker_errors(refs, wer.per_conversation)
        low, high = speaker_bootstrap_interval(spk, options.n_bootstrap, options.seed, options.confidence)
        row[metric] = {"wer": wer.wer, "errors": wer.errors, "words": wer.length, "ins": wer.insertions,
                       "del": wer.deletions, "sub": wer.substitutions, "ci": [low, high]}
        by_speaker[metric] = spk
    correct = np.array([float(len(emitted[c]) == len(refs[c])) for c in refs])
    rng = np.random.default_rng(options.seed)
    row["turn_counting"] = {"accuracy": 100.0 * float(correct.mean()),
                            "ci": [100.0 * v for v in _conversation_interval(correct, options.n_bootstrap, rng,
                                                                             options.confidence)],
                            "emitted_turns": sum(len(emitted[c]) for c in refs)}
    row["latency"] = turn_latency(refs, {c: emitted[c] for c in refs}, options.max_offset_s).summary()
    return row, by_speaker


def cut_groups(cuts, field: str) -> Dict[str, str]:
    """{cut id: the cut's custom ``field``}; a cut without it is an error naming the cut."""
    groups = {}
    for cut in cuts:
        value = (cut.custom or {}).get(field)
        if value is None:
            raise ValueError(f"cut {cut.id} has no custom field {field!r} to group the scores by")
        groups[cut.id] = str(value)
    return groups


def score_decode(cuts, hyps: Mapping[str, ConversationHyp], tokenizer, options: ScoreOptions) -> Dict[str, Any]:
    """Score every conversation of ``cuts`` (each needs a hypothesis; extra hypotheses are an error)."""
    cuts = list(cuts)
    refs = {cut.id: conversation_turns(cut) for cut in cuts}
    groups = cut_groups(cuts, options.group_by) if options.group_by else None
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if missing or extra:
        raise ValueError(f"conversations without a hypothesis: {missing[:5]}; hypotheses of conversations not in "
                         f"the cuts: {extra[:5]}")
    segments, emitted, per_conv = {}, {}, {}
    for cid, turns in refs.items():
        segments[cid], emitted[cid] = conversation_outputs(hyps[cid], tokenizer, options.gap_s)
        ratio = overlap_ratio([(t.start, t.end) for t in turns])
        per_conv[cid] = {"overlap_ratio": round(ratio, 4),
                         "bin": groups[cid] if groups else bin_name(nearest_bin(ratio, options.bins)),
                         "ref_turns": len(turns), "emitted_turns": len(emitted[cid])}
    overall, by_speaker = score_group(refs, segments, emitted, options)
    for metric in METRICS:
        wer = multitalker_wer(refs, segments, metric)
        for cid, (errors, words) in wer.per_conversation.items():
            per_conv[cid][metric] = [errors, words]
    for cid, turns in refs.items():
        pairs = match_turns(turns, emitted[cid], options.max_offset_s)
        per_conv[cid]["end_latency_ms"] = [round(1000.0 * (emitted[cid][j].eot_s - turns[i].end), 1)
                                           for i, j in pairs if emitted[cid][j].eot_s is not None]
        per_conv[cid]["start_latency_ms"] = [round(1000.0 * (emitted[cid][j].sot_s - turns[i].start), 1)
                                             for i, j in pairs if emitted[cid][j].sot_s is not None]
    bins: Dict[str, Any] = {}
    for name in sorted(set(groups.values())) if groups else [bin_name(b) for b in options.bins]:
        ids = [c for c in refs if per_conv[c]["bin"] == name]
        if ids:
            bins[name], _ = score_group({c: refs[c] for c in ids}, segments, emitted, options)
    return {"overall": overall, "bins": bins, "by_speaker": {m: {s: list(v) for s, v in d.items()}
                                                             for m, d in by_speaker.items()},
            "conversations": per_conv,
            "options": {"bins": list(options.bins), "group_by": options.group_by, "gap_s": options.gap_s,
                        "max_offset_s": options.max_offset_s, "n_bootstrap": options.n_bootstrap, "seed": options.seed,
                        "confidence": options.confidence, **options.extra}}


def paired_differences(system: Mapping[str, Any], baseline: Mapping[str, Any], n_bootstrap: int = 1000,
                       seed: int = 0, confidence: float = 0.95) -> Dict[str, Any]:
    """system - baseline, with paired bootstrap intervals: WERs in absolute points (speakers resampled), turn
    counting in points and the median end-of-turn latency in ms (conversations resampled)."""
    out: Dict[str, Any] = {}
    for metric in METRICS:
        a = {s: tuple(v) for s, v in system["by_speaker"][metric].items()}
        b = {s: tuple(v) for s, v in baseline["by_speaker"][metric].items()}
        diff = system["overall"][metric]["wer"] - baseline["overall"][metric]["wer"]
        rel = 100.0 * diff / baseline["overall"][metric]["wer"] if baseline["overall"][metric]["wer"] else float("nan")
        out[metric] = {"diff": diff, "relative_pct": rel,
                       "ci": list(paired_speaker_bootstrap_difference(a, b, n_bootstrap, seed, confidence))}
    convs = sorted(system["conversations"])
    if convs != sorted(baseline["conversations"]):
        raise ValueError("paired differences: the two decodes scored different conversations")
    sa, sb = system["conversations"], baseline["conversations"]
    correct_a = np.array([float(sa[c]["emitted_turns"] == sa[c]["ref_turns"]) for c in convs])
    correct_b = np.array([float(sb[c]["emitted_turns"] == sb[c]["ref_turns"]) for c in convs])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(convs), size=(n_bootstrap, len(convs)))
    tail = (1.0 - confidence) / 2.0
    tc = 100.0 * (correct_a[draws].mean(1) - correct_b[draws].mean(1))
    out["turn_counting"] = {"diff": 100.0 * float(correct_a.mean() - correct_b.mean()),
                            "ci": [float(v) for v in np.quantile(tc, [tail, 1.0 - tail])]}
    for key in ("end_latency_ms", "start_latency_ms"):
        lat_a = [np.array(sa[c][key], dtype=float) for c in convs]
        lat_b = [np.array(sb[c][key], dtype=float) for c in convs]
        if not any(len(x) for x in lat_a) or not any(len(x) for x in lat_b):
            out[key.replace("_ms", "_median_ms")] = {"diff": float("nan"), "ci": [float("nan"), float("nan")]}
            continue
        diffs = []
        for row in draws[: min(n_bootstrap, 1000)]:
            xa = np.concatenate([lat_a[i] for i in row])
            xb = np.concatenate([lat_b[i] for i in row])
            if len(xa) and len(xb):
                diffs.append(float(np.median(xa) - np.median(xb)))
        point = float(np.median(np.concatenate(lat_a)) - np.median(np.concatenate(lat_b)))
        out[key.replace("_ms", "_median_ms")] = {"diff": point,
                                                 "ci": [float(v) for v in np.quantile(diffs, [tail, 1.0 - tail])]}
    return out


def _fmt(x: Optional[float], digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


TABLE_HEADER = ("set", "conversations", "cpWER %", "cpWER 95% CI", "ORC-WER %", "ORC-WER 95% CI",
                "turn counting %", "turn counting 95% CI", "start latency median ms", "start latency p90 ms",
                "end latency median ms", "end latency p90 ms", "matched / ref turns")


def group_label(result: Mapping[str, Any]) -> str:
    """What the rows after the overall one are: "overlap" (ratio bins) or the custom field they are grouped by."""
    return result["options"].get("group_by") or "overlap"


def table_rows(result: Mapping[str, Any]) -> List[List[str]]:
    """The overall row and one row per overlap-ratio bin (or group, ``group_by``)."""
    rows = []
    label = group_label(result)
    for name, row in [("all", result["overall"]), *((f"{label} {k}", v) for k, v in result["bins"].items())]:
        lat = row["latency"]
        rows.append([name, str(row["conversations"]),
                     _fmt(row["cpwer"]["wer"], 2), f"[{_fmt(row['cpwer']['ci'][0], 2)}, {_fmt(row['cpwer']['ci'][1], 2)}]",
                     _fmt(row["orcwer"]["wer"], 2),
                     f"[{_fmt(row['orcwer']['ci'][0], 2)}, {_fmt(row['orcwer']['ci'][1], 2)}]",
                     _fmt(row["turn_counting"]["accuracy"]),
                     f"[{_fmt(row['turn_counting']['ci'][0])}, {_fmt(row['turn_counting']['ci'][1])}]",
                     _fmt(lat["start_median_ms"], 0), _fmt(lat["start_p90_ms"], 0),
                     _fmt(lat["end_median_ms"], 0), _fmt(lat["end_p90_ms"], 0),
                     f"{lat['matched_turns']} / {lat['ref_turns']}"])
    return rows


def write_score(out_dir: Path, name: str, result: Mapping[str, Any]) -> Dict[str, Path]:
    """``multitalker-<name>.json`` (everything), ``.tsv`` and ``.md`` (the table) under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"multitalker-{name}.{ext}" for ext in ("json", "tsv", "md")}
    atomic_write_text(paths["json"], json.dumps(result, indent=1, sort_keys=True) + "\n")
    rows = table_rows(result)
    atomic_write_text(paths["tsv"], "\t".join(TABLE_HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    md = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    atomic_write_text(paths["md"], "\n".join(md) + "\n")
    return paths
