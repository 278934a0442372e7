"""Shared pieces of cohort discovery (Dheram et al., Interspeech 2022): per-speaker error counts, cohort maps,
and the disparity of a cohort assignment.

The three methods live in their own modules and all produce a ``{speaker: cohort}`` assignment:

- :mod:`serac.fairness.geo_tree`: recursive binary lon/lat splits maximising the WER difference;
- :mod:`serac.fairness.geodemographic`: binary zip-code partitions by a majority demographic attribute;
- :mod:`serac.fairness.auto_cohorts`: k-means over speaker embeddings, no labels.

Every method is *fitted* on one decode (dev) and *applied* to speakers it has not seen (test): the tree by its
lon/lat thresholds, the partition by the zip's attribute, k-means by the nearest centroid.

Definitions (the numbers of the comparison table):

- cohort WER: pooled, errors / reference words over the cohort's utterances, in percent;
- bottom / top cohort: highest / lowest WER (ties broken by name); relative gap = (bottom - top) / top * 100;
- bottom share: the bottom cohort's speakers as a percentage of all scored speakers;
- *dev-ranked* evaluation on test: bottom and top are the cohorts that were bottom and top **on dev**, so the
  test number measures whether the discovered disparity generalises (no peeking at test WERs); the test's own
  re-ranked gap is reported too but is optimistic with many small cohorts.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from serac.fairness.cohort_metrics import ScoredUtterances, score_utterances
from serac.scoring.wer import Result
from serac.utils import atomic_write_text

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)


@dataclass
class SpeakerRecord:
    """A speaker's decoding errors and speaker-level attributes (those equal on all its cuts)."""

    speaker: str
    errors: int = 0
    words: int = 0
    utts: int = 0
    attrs: Dict[str, Any] = field(default_factory=dict)

    @property
    def wer(self) -> Optional[float]:
        return 100.0 * self.errors / self.words if self.words else None


def pooled_wer(records: Iterable[SpeakerRecord]) -> Optional[float]:
    errors = words = 0
    for r in records:
        errors += r.errors
        words += r.words
    return 100.0 * errors / words if words else None


def speaker_attributes(attrs: Mapping[str, Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """``{speaker: {attribute: value}}`` keeping the attributes that have one value over all of a speaker's cuts
    (a speaker's zip, lat/lon, demographics; not per-utterance ones such as condition)."""
    values: Dict[str, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
    counts: Dict[str, int] = defaultdict(int)
    for cut_id, a in attrs.items():
        speaker = str(a.get("speaker", cut_id))
        counts[speaker] += 1
        for k, v in a.items():
            values[speaker][k].add(v)
    out: Dict[str, Dict[str, Any]] = {}
    for speaker, per_key in values.items():
        out[speaker] = {k: next(iter(v)) for k, v in per_key.items() if len(v) == 1}
    return out


def speaker_records(results: Union[Sequence[Result], PathLike, ScoredUtterances],
                    attrs: Mapping[str, Mapping[str, Any]]) -> Dict[str, SpeakerRecord]:
    """Per-speaker pooled error counts of a decode, with speaker-level attributes from the cuts."""
    scored = results if isinstance(results, dict) else score_utterances(results)
    missing = [c for c in scored if c not in attrs]
    if missing:
        raise ValueError(f"{len(missing)} decoded cut(s) are not in the cuts manifest, e.g. {missing[:3]}")
    spk_attrs = speaker_attributes({c: attrs[c] for c in scored})
    records: Dict[str, SpeakerRecord] = {}
    for cut_id, utt in scored.items():
        speaker = str(attrs[cut_id].get("speaker", cut_id))
        rec = records.get(speaker)
        if rec is None:
            rec = records[speaker] = SpeakerRecord(speaker, attrs=spk_attrs.get(speaker, {}))
        rec.errors += utt.errors
        rec.words += utt.num_words
        rec.utts += 1
    return dict(sorted(records.items()))


def write_cohort_map(assignment: Mapping[str, str], key: str, path: PathLike,
                     comment: Optional[str] = None) -> None:
    """A cohort map TSV (``speaker<TAB>key``) that steps/score_cohorts.sh reads with ``--cohort-map``."""
    lines = [f"# {line}" for line in (comment or "").splitlines() if line.strip()]
    lines.append(f"speaker\t{key}")
    for speaker in sorted(assignment):
        lines.append(f"{speaker}\t{assignment[speaker]}")
    atomic_write_text(path, "\n".join(lines) + "\n")


@dataclass
class CohortRow:
    cohort: str
    speakers: int
    utts: int
    words: int
    errors: int
    wer: Optional[float]


def cohort_rows(assignment: Mapping[str, str], records: Mapping[str, SpeakerRecord]) -> List[CohortRow]:
    """Pooled WER per cohort over the speakers of ``records`` (speakers without a cohort are ignored),
    sorted by WER (highest first), then name."""
    groups: Dict[str, List[SpeakerRecord]] = defaultdict(list)
    for speaker, rec in records.items():
        if speaker in assignment:
            groups[assignment[speaker]].append(rec)
    rows = [CohortRow(name, len(g), sum(r.utts for r in g), sum(r.words for r in g), sum(r.errors for r in g),
                      pooled_wer(g)) for name, g in groups.items()]
    return sorted(rows, key=lambda r: (-(r.wer if r.wer is not None else -1.0), r.cohort))


def _rel_gap(bottom: Optional[float], top: Optional[float]) -> Optional[float]:
    if bottom is None or top is None or top == 0:
        return None
    return (bottom - top) / top * 100.0


def disparity(assignment: Mapping[str, str], records: Mapping[str, SpeakerRecord],
              ranking: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Disparity summary of a cohort assignment over the speakers in ``records``.

    With ``ranking`` (cohort names, worst first, as ranked on the fit set), bottom and top are ``ranking[0]``
    and ``ranking[-1]`` (the dev-ranked evaluation); otherwise the cohorts are ranked by their own WER here.
    """
    rows = [r for r in cohort_rows(assignment, records) if r.wer is not None]
    scored_speakers = sum(r.speakers for r in rows)
    by_name = {r.cohort: r for r in rows}
    out: Dict[str, Any] = {"num_cohorts": len(rows), "num_speakers": scored_speakers,
                           "overall_wer": pooled_wer(rec for s, rec in records.items() if s in assignment),
                           "cohorts": [vars(r) for r in rows]}
    if not rows:
        return {**out, "bottom": None, "top": None, "relative_gap": None, "bottom_speaker_share": None}
    if ranking is not None:
        present = [c for c in ranking if c in by_name]
        bottom = by_name.get(ranking[0])
        top = by_name.get(ranking[-1])
        out["ranking"] = "fit"
        out["cohorts_missing"] = [c for c in ranking if c not in by_name]
    else:
        present = [r.cohort for r in rows]
        bottom, top = rows[0], rows[-1]
        out["ranking"] = "own"
    out.update({
        "bottom": bottom.cohort if bottom else None,
        "top": top.cohort if top else None,
        "bottom_wer": bottom.wer if bottom else None,
        "top_wer": top.wer if top else None,
        "relative_gap": _rel_gap(bottom.wer if bottom else None, top.wer if top else None),
        "bottom_speaker_share": 100.0 * bottom.speakers / scored_speakers if bottom else None,
        "bottom_word_share": 100.0 * bottom.words / sum(r.words for r in rows) if bottom else None,
        "order": present,
    })
    return out

