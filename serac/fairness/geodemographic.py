"""Geodemographic cohorts (Dheram et al., Interspeech 2022): zip codes split into two groups by a majority
demographic attribute of the zip, value vs rest, choosing the partition with the largest WER gap.

Every attribute whose name starts with ``demo_`` (``demo_urbanicity``, ``demo_income_band``, ...) is a zip-level
property that a speaker inherits from their home zip. For each attribute A and each of its values v, speakers
are split into ``A=v`` and ``A!=v`` (speakers without A go to the rest); the partition is admissible when both
sides have at least ``min_speakers`` speakers and ``min_words`` reference words, and the chosen one maximises
|WER(A=v) - WER(A!=v)| (pooled WER; ties: attribute name, then value). New speakers are assigned by their zip's
attribute value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from serac.fairness.discovery import SpeakerRecord

DEMO_PREFIX = "demo_"


@dataclass
class Partition:
    attribute: str
    value: str
    wer_in: float
    wer_out: float
    speakers_in: int
    speakers_out: int
    words_in: int
    words_out: int

    @property
    def gain(self) -> float:
        return abs(self.wer_in - self.wer_out)

    @property
    def label_in(self) -> str:
        return f"{self.attribute}={self.value}"

    @property
    def label_out(self) -> str:
        return f"{self.attribute}!={self.value}"

    def assign(self, attrs: Mapping[str, Any]) -> str:
        return self.label_in if str(attrs.get(self.attribute)) == self.value and self.attribute in attrs \
            else self.label_out

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "wer_difference": self.gain, "labels": [self.label_in, self.label_out]}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Partition":
        return cls(**{k: d[k] for k in ("attribute", "value", "wer_in", "wer_out", "speakers_in", "speakers_out",
                                        "words_in", "words_out")})


def demographic_attributes(records: Iterable[SpeakerRecord], prefix: str = DEMO_PREFIX) -> List[str]:
    return sorted({k for r in records for k in r.attrs if k.startswith(prefix)})


def candidate_partitions(records: Sequence[SpeakerRecord], attributes: Optional[Sequence[str]] = None,
                         min_speakers: int = 1, min_words: int = 1) -> List[Partition]:
    """Every admissible value-vs-rest partition, best (largest WER difference) first."""
    records = list(records)
    attributes = list(attributes) if attributes else demographic_attributes(records)
    min_speakers, min_words = max(1, int(min_speakers)), max(1, int(min_words))
    tot_e, tot_w, n = sum(r.errors for r in records), sum(r.words for r in records), len(records)
    out = []
    for attr in sorted(attributes):
        values = sorted({str(r.attrs[attr]) for r in records if attr in r.attrs})
        for value in values:
            inside = [r for r in records if attr in r.attrs and str(r.attrs[attr]) == value]
            e_in, w_in = sum(r.errors for r in inside), sum(r.words for r in inside)
            n_in, w_out = len(inside), tot_w - w_in
            if n_in < min_speakers or n - n_in < min_speakers or w_in < min_words or w_out < min_words:
                continue
            out.append(Partition(attr, value, 100.0 * e_in / w_in, 100.0 * (tot_e - e_in) / w_out, n_in, n - n_in,
                                 w_in, w_out))
    # stable sort: ties keep (attribute, value) order
    return sorted(out, key=lambda p: -p.gain)


def best_partition(records: Sequence[SpeakerRecord], attributes: Optional[Sequence[str]] = None,
                   min_speakers: int = 1, min_words: int = 1) -> Partition:
    cands = candidate_partitions(records, attributes, min_speakers, min_words)
    if not cands:
        raise ValueError("no admissible demographic partition (attributes missing, or min sizes too large)")
    return cands[0]


def assign_speakers(partition: Partition, speaker_attrs: Mapping[str, Mapping[str, Any]]) -> Dict[str, str]:
    return {s: partition.assign(a) for s, a in speaker_attrs.items()}
