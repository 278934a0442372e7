"""Per-cohort WER with speaker-level bootstrap confidence intervals, and per-speaker WER.
Definitions of every number: :mod:`serac.fairness.cohort_metrics`. Writers: :mod:`serac.fairness.cohort_reports`."""
from __future__ import annotations

import logging
import math
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from serac.fairness.cohorts import MAX_SENSIBLE_COHORTS, PathLike
from serac.scoring.wer import Result, error_counts, load_transcripts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UtteranceErrors:
    """Error counts of one decoded utterance against its reference."""

    ins: int
    dels: int
    subs: int
    num_words: int

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs


ScoredUtterances = Dict[str, UtteranceErrors]


def score_utterances(results: Union[Sequence[Result], PathLike]) -> ScoredUtterances:
    """Align every utterance once: ``{cut_id: UtteranceErrors}``.  ``results`` may be a list of
    ``(cut_id, ref_words, hyp_words)`` or the path of a recogs file.  Scoring several keys, pass
    the returned dict to :func:`cohort_wer` to avoid re-aligning for each key."""
    source = str(results) if isinstance(results, (str, Path)) else "results"
    if isinstance(results, (str, Path)):
        results = load_transcripts(results)
    if not results:
        raise ValueError(f"{source}: no results to score")
    scored: ScoredUtterances = {}
    for cut_id, ref, hyp in results:
        if cut_id in scored:
            raise ValueError(f"{source}: duplicate cut id {cut_id!r}")
        ins, dels, subs = error_counts(ref, hyp)
        scored[cut_id] = UtteranceErrors(ins=ins, dels=dels, subs=subs, num_words=len(ref))
    return scored


def _as_scored(results: Union[Sequence[Result], PathLike, ScoredUtterances]) -> ScoredUtterances:
    if isinstance(results, Mapping):
        if not results:
            raise ValueError("no scored utterances")
        return dict(results)
    return score_utterances(results)


def _speaker_of(cut_id: str, attrs: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    speaker = attrs[cut_id].get("speaker")
    return None if speaker is None else str(speaker)


def _check_cuts_known(scored: ScoredUtterances, attrs: Mapping[str, Mapping[str, Any]]) -> None:
    missing = [cut_id for cut_id in scored if cut_id not in attrs]
    if missing:
        raise ValueError(
            f"{len(missing)} decoded cut(s) are not in the cuts manifest, e.g. {missing[0]!r}: "
            f"score with the manifest the decode was run on"
        )


# ---------------------------------------------------------------------------------------------
# per-cohort WER
# ---------------------------------------------------------------------------------------------


@dataclass
class CohortStats:
    """WER of one cohort; ``ci_low``/``ci_high`` are None when no bootstrap was run."""

    cohort: str
    num_speakers: int
    num_utts: int
    num_words: int
    errors: int
    ins: int
    dels: int
    subs: int
    wer: float
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    #: fewer speakers than the report's ``min_speakers``: its WER and interval say little about the cohort
    too_small: bool = False


@dataclass
class CohortReport:
    """Per-cohort WERs for one attribute plus the disparity summary (see module docstring)."""

    key: str
    cohorts: List[CohortStats]  # sorted by WER ascending, then by name
    overall_wer: float
    overall_words: int
    overall_errors: int
    num_utts: int
    num_speakers: int
    mean_wer: float
    min_wer: float
    max_wer: float
    var_wer: float  # population variance, ddof=0
    std_wer: float  # population std, ddof=0
    top_cohort: str
    bottom_cohort: str
    relative_gap: Optional[float]  # percent; None when the top cohort has 0% WER
    bottom_speaker_share: float  # percent of all scored speakers
    bottom_utt_share: float  # percent of all scored utterances
    n_bootstrap: int
    seed: int
    confidence: float
    excluded_cohorts: List[str] = field(default_factory=list)
    min_speakers: int = 1

    @property
    def too_small_cohorts(self) -> List[str]:
        return [c.cohort for c in self.cohorts if c.too_small]

    @property
    def all_tie(self) -> bool:
        """Every cohort has the same WER (one cohort included): there is no gap to report."""
        return self.max_wer == self.min_wer

    def cohort(self, name: str) -> CohortStats:
        """The stats of cohort ``name`` (KeyError naming the known cohorts otherwise)."""
        for stats in self.cohorts:
            if stats.cohort == name:
                return stats
        raise KeyError(f"no cohort {name!r} for key {self.key!r}; cohorts: {[c.cohort for c in self.cohorts]}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form (also what ``cohort-summary-<key>.json`` holds)."""
        return {
            "key": self.key,
            "overall": {
                "wer": self.overall_wer,
                "num_words": self.overall_words,
                "errors": self.overall_errors,
                "num_utts": self.num_utts,
                "num_speakers": self.num_speakers,
            },
            "summary": {
                "num_cohorts": len(self.cohorts),
                "mean_wer": self.mean_wer,
                "min_wer": self.min_wer,
                "max_wer": self.max_wer,
                "var_wer": self.var_wer,
                "std_wer": self.std_wer,
                "variance_ddof": 0,
                "top_cohort": self.top_cohort,
                "bottom_cohort": self.bottom_cohort,
                "relative_gap": self.relative_gap,
                "bottom_speaker_share": self.bottom_speaker_share,
                "bottom_utt_share": self.bottom_utt_share,
                "all_cohorts_tie": self.all_tie,
                "min_speakers": self.min_speakers,
                "too_small_cohorts": self.too_small_cohorts,
            },
            "bootstrap": {
                "n_bootstrap": self.n_bootstrap,
                "seed": self.seed,
                "confidence": self.confidence,
                "resampling_unit": "speaker",
                "interval": "percentile",
            },
            "cohorts": [asdict(c) for c in self.cohorts],
            "excluded_cohorts": list(self.excluded_cohorts),
        }


def _cohort_label(value: Any) -> str:
    return str(value)


def bootstrap_wer_interval(
    speaker_errors: np.ndarray,
    speaker_words: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> Tuple[float, float]:
    """Percentile interval (in %) of pooled WER when resampling speakers with replacement.

    ``speaker_errors[i]`` / ``speaker_words[i]`` are the totals of speaker i.  A resample that
    draws only speakers without reference words has no WER and is dropped.
    """
    num_speakers = len(speaker_words)
    if num_speakers == 0 or n_bootstrap <= 0:
        raise ValueError("bootstrap needs at least one speaker and one resample")
    errors = np.asarray(speaker_errors, dtype=np.float64)
    words = np.asarray(speaker_words, dtype=np.float64)
    ratios = np.empty(n_bootstrap, dtype=np.float64)
    # bound the index matrix to ~4M entries so cohorts with many speakers do not blow memory
    batch = max(1, min(n_bootstrap, 4_000_000 // num_speakers))
    for start in range(0, n_bootstrap, batch):
        stop = min(start + batch, n_bootstrap)
        draws = rng.integers(0, num_speakers, size=(stop - start, num_speakers))
        drawn_words = words[draws].sum(axis=1)
        drawn_errors = errors[draws].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios[start:stop] = np.where(drawn_words > 0, drawn_errors / drawn_words, np.nan)
    if np.all(np.isnan(ratios)):
        raise ValueError("every bootstrap resample had zero reference words")
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(ratios, [tail, 1.0 - tail])
    return 100.0 * float(low), 100.0 * float(high)


def _cohort_rng(seed: int, cohort: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(cohort.encode("utf-8"))]))


def cohort_wer(
    results: Union[Sequence[Result], PathLike, ScoredUtterances],
    attrs: Mapping[str, Mapping[str, Any]],
    key: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    min_speakers: int = 3,
) -> CohortReport:
    """Score ``results`` per cohort of attribute ``key``.

    Args:
      results: ``[(cut_id, ref_words, hyp_words), ...]``, a recogs file, or the output of
        :func:`score_utterances`.
      attrs: ``{cut_id: {attribute: value}}`` from :func:`load_cut_attributes` (optionally
        passed through :func:`apply_cohort_maps`).  Every decoded cut must be there and have
        ``key``; a cut without ``speaker`` is its own speaker (warned once).
      key: the attribute whose values define the cohorts.
      n_bootstrap: speaker resamples per cohort for the interval; 0 disables it.
      seed: makes the intervals reproducible.
      confidence: interval coverage, e.g. 0.95.
      min_speakers: cohorts with fewer speakers are marked ``too_small`` (warned; the tables say so): a
        speaker bootstrap of one speaker gives a zero-width interval, of two a meaningless one.
    """
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if min_speakers < 1:
        raise ValueError(f"min_speakers must be >= 1, got {min_speakers}")
    scored = _as_scored(results)
    _check_cuts_known(scored, attrs)

    # cohort -> speaker -> [errors, words, ins, dels, subs, utts]
    totals: Dict[str, Dict[str, List[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * 6))
    speakers_seen = set()
    num_without_speaker = 0
    for cut_id, utt in scored.items():
        cut_attrs = attrs[cut_id]
        value = cut_attrs.get(key)
        if value is None:
            raise ValueError(
                f"cut {cut_id!r} has no attribute {key!r} (neither in the cuts manifest nor in a "
                f"cohort map); it has: {sorted(cut_attrs)}"
            )
        speaker = _speaker_of(cut_id, attrs)
        if speaker is None:
            num_without_speaker += 1
            speaker = f"<cut:{cut_id}>"
        speakers_seen.add(speaker)
        row = totals[_cohort_label(value)][speaker]
        row[0] += utt.errors
        row[1] += utt.num_words
        row[2] += utt.ins
        row[3] += utt.dels
        row[4] += utt.subs
        row[5] += 1
    if num_without_speaker:
        logger.warning(
            f"{num_without_speaker} cut(s) have no speaker; each is treated as its own speaker "
            f"in the bootstrap"
        )
    if len(totals) > MAX_SENSIBLE_COHORTS:
        logger.warning(
            f"attribute {key!r} has {len(totals)} distinct values: it looks continuous or "
            f"near-unique (lat/lon?), and per-value cohorts are not a meaningful comparison; "
            f"bin it or map it to regions with a cohort map"
        )

    cohorts: List[CohortStats] = []
    excluded: List[str] = []
    for name in sorted(totals):
        per_speaker = totals[name]
        speakers = sorted(per_speaker)
        counts = np.array([per_speaker[s] for s in speakers], dtype=np.int64)
        errors, words, ins, dels, subs, utts = (int(x) for x in counts.sum(axis=0))
        if words == 0:
            logger.warning(f"cohort {key}={name!r}: no reference words ({utts} utts); WER undefined, left out")
            excluded.append(name)
            continue
        ci_low = ci_high = None
        if n_bootstrap > 0:
            ci_low, ci_high = bootstrap_wer_interval(
                counts[:, 0], counts[:, 1], n_bootstrap, _cohort_rng(seed, name), confidence
            )
        cohorts.append(
            CohortStats(
                cohort=name,
                num_speakers=len(speakers),
                num_utts=utts,
                num_words=words,
                errors=errors,
                ins=ins,
                dels=dels,
                subs=subs,
                wer=100.0 * errors / words,
                ci_low=ci_low,
                ci_high=ci_high,
                too_small=len(speakers) < min_speakers,
            )
        )
    if not cohorts:
        raise ValueError(f"no cohort of {key!r} has reference words; nothing to report")
    cohorts.sort(key=lambda c: (c.wer, c.cohort))

    overall_words = sum(u.num_words for u in scored.values())
    overall_errors = sum(u.errors for u in scored.values())
    if overall_words == 0:
        raise ValueError("the references contain no words; WER undefined")
    wers = np.array([c.wer for c in cohorts], dtype=np.float64)
    top = min(cohorts, key=lambda c: (c.wer, c.cohort))
    bottom = min(cohorts, key=lambda c: (-c.wer, c.cohort))
    if bottom is top and len(cohorts) > 1:
        # every cohort ties: name two different ones (first and last by name) rather than one as best and worst
        bottom = max(cohorts, key=lambda c: c.cohort)
    small = [f"{c.cohort} ({c.num_speakers})" for c in cohorts if c.too_small]
    if small:
        logger.warning(f"{key}: {len(small)} cohort(s) with fewer than {min_speakers} speakers, too small to judge: "
                       f"{', '.join(small)}")
    relative_gap = None if top.wer == 0 else (bottom.wer - top.wer) / top.wer * 100.0
    return CohortReport(
        key=key,
        cohorts=cohorts,
        overall_wer=100.0 * overall_errors / overall_words,
        overall_words=overall_words,
        overall_errors=overall_errors,
        num_utts=len(scored),
        num_speakers=len(speakers_seen),
        mean_wer=float(wers.mean()),
        min_wer=float(wers.min()),
        max_wer=float(wers.max()),
        var_wer=float(wers.var(ddof=0)),
        std_wer=float(wers.std(ddof=0)),
        top_cohort=top.cohort,
        bottom_cohort=bottom.cohort,
        relative_gap=relative_gap,
        bottom_speaker_share=100.0 * bottom.num_speakers / len(speakers_seen),
        bottom_utt_share=100.0 * bottom.num_utts / len(scored),
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
        excluded_cohorts=excluded,
        min_speakers=min_speakers,
    )


@dataclass
class SpeakerPoint:
    """WER of one speaker, with a location when the cuts carry ``lat``/``lon``."""

    speaker: str
    num_utts: int
    num_words: int
    errors: int
    wer: Optional[float]  # None when the speaker has no reference words
    lon: Optional[float] = None
    lat: Optional[float] = None
    region: Optional[str] = None


def _as_float(value: Any, cut_id: str, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"cut {cut_id!r}: attribute {name!r}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"cut {cut_id!r}: attribute {name!r}={value!r} is not finite")
    return number


def speaker_wer(
    results: Union[Sequence[Result], PathLike, ScoredUtterances],
    attrs: Mapping[str, Mapping[str, Any]],
    region_key: Optional[str] = None,
) -> List[SpeakerPoint]:
    """Pooled WER per speaker, sorted by speaker.  A speaker's location is the mean ``lat``/``lon``
    of its cuts (usually all equal); it is None unless every one of its cuts has both.
    ``region_key`` (e.g. ``state``) names the attribute used as the speaker's region label."""
    scored = _as_scored(results)
    _check_cuts_known(scored, attrs)
    grouped: Dict[str, List[str]] = defaultdict(list)
    for cut_id in scored:
        speaker = _speaker_of(cut_id, attrs)
        grouped[speaker if speaker is not None else f"<cut:{cut_id}>"].append(cut_id)
    points = []
    for speaker in sorted(grouped):
        cut_ids = grouped[speaker]
        words = sum(scored[c].num_words for c in cut_ids)
        errors = sum(scored[c].errors for c in cut_ids)
        lon = lat = None
        if all(attrs[c].get("lon") is not None and attrs[c].get("lat") is not None for c in cut_ids):
            lon = float(np.mean([_as_float(attrs[c]["lon"], c, "lon") for c in cut_ids]))
            lat = float(np.mean([_as_float(attrs[c]["lat"], c, "lat") for c in cut_ids]))
        region = None
        if region_key is not None and attrs[cut_ids[0]].get(region_key) is not None:
            region = str(attrs[cut_ids[0]][region_key])
        points.append(
            SpeakerPoint(
                speaker=speaker,
                num_utts=len(cut_ids),
                num_words=words,
                errors=errors,
                wer=100.0 * errors / words if words else None,
                lon=lon,
                lat=lat,
                region=region,
            )
        )
    return points
