"""Per-cohort WER with speaker-level bootstrap confidence intervals.

A *cohort* is the set of utterances sharing one value of an attribute (``accent``,
``gender``, ``age_band``, ``state``, an automatically discovered ``auto_cohort``, ...).
Attributes travel with the supervisions of a lhotse cuts manifest, so any decode of any
lhotse corpus can be scored per cohort::

    from serac.fairness.cohort_metrics import load_cut_attributes, cohort_wer, write_cohort_report
    attrs = load_cut_attributes("data/fbank/synth_cuts_test.jsonl.gz")
    report = cohort_wer("exp/x/decode/test/recogs-test-greedy_search.txt", attrs, "accent")
    write_cohort_report(report, "exp/x/decode/test/cohorts")

Definitions (what the numbers in the tables mean):

- cohort WER = (ins + del + sub) / reference words of the cohort's utterances, in percent
  (pooled over utterances, not a mean of per-utterance WERs).
- confidence interval: percentile bootstrap that resamples the cohort's *speakers* with
  replacement (utterances of one speaker are correlated, so resampling utterances would give
  intervals that are too narrow).  The WER of one resample is total errors / total reference
  words of the drawn speakers' utterances.  Each cohort draws from its own random stream,
  seeded by ``(seed, crc32(cohort name))``, so its interval depends neither on the other
  cohorts nor on their order.
- summary statistics (mean, min, max, variance, std) are over the cohort WERs, each cohort
  weighted equally; variance and std are *population* statistics (``ddof=0``): the cohorts
  are the whole population being compared, not a sample of one.
- top cohort = lowest WER, bottom cohort = highest WER (ties broken by cohort name);
  relative gap = (bottom - top) / top * 100, undefined (None) when the top cohort's WER is 0.
- bottom share = the bottom cohort's speakers (utterances) as a percentage of all distinct
  speakers (utterances) that were scored.
- cohorts whose utterances have no reference words have no WER: they are left out of the
  table and summary with a warning and listed in ``excluded_cohorts``; their utterances still
  count in the overall WER, which is always that of the whole decode.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from serac.scoring.wer import Result, error_counts, load_transcripts
from serac.utils import atomic_write_text

PathLike = Union[str, Path]
# cut id -> attribute name -> value
CutAttributes = Dict[str, Dict[str, Any]]

logger = logging.getLogger(__name__)

# More distinct values than this and a key is probably continuous (lat, lon, snr): one cohort
# per value says nothing about fairness, so we warn.
MAX_SENSIBLE_COHORTS = 50

# Supervision fields that are cohort attributes when set; everything in `custom` is too.
SUPERVISION_ATTRIBUTE_FIELDS = ("speaker", "gender", "language")

_SCALAR_TYPES = (str, int, float, bool)


# ---------------------------------------------------------------------------------------------
# attributes
# ---------------------------------------------------------------------------------------------


def cut_attributes(cut: Any) -> Dict[str, Any]:
    """Cohort attributes of one lhotse cut: its first supervision's ``speaker``, ``gender``,
    ``language`` and every ``custom`` key, over the cut's own ``custom`` (the supervision wins
    on a clash).  Unset (None) and non-scalar values (arrays, nested dicts) are left out."""
    attrs: Dict[str, Any] = {}
    cut_custom = getattr(cut, "custom", None) or {}
    for name, value in cut_custom.items():
        if isinstance(value, _SCALAR_TYPES):
            attrs[name] = value
    supervisions = getattr(cut, "supervisions", None) or []
    if supervisions:
        sup = supervisions[0]
        for name, value in (sup.custom or {}).items():
            if isinstance(value, _SCALAR_TYPES):
                attrs[name] = value
        for name in SUPERVISION_ATTRIBUTE_FIELDS:
            value = getattr(sup, name, None)
            if value is not None:
                attrs[name] = value
    return attrs


def load_cut_attributes(cuts_path: PathLike) -> CutAttributes:
    """``{cut_id: {attribute: value}}`` for every cut of a lhotse cuts manifest (read lazily)."""
    from lhotse import CutSet  # lhotse is slow to import; only the callers that read cuts pay

    cuts_path = Path(cuts_path)
    if not cuts_path.is_file():
        raise FileNotFoundError(f"cuts manifest not found: {cuts_path}")
    attrs: CutAttributes = {}
    for cut in CutSet.from_jsonl_lazy(cuts_path):
        if cut.id in attrs:
            raise ValueError(f"{cuts_path}: duplicate cut id {cut.id!r}")
        attrs[cut.id] = cut_attributes(cut)
    if not attrs:
        raise ValueError(f"{cuts_path}: no cuts in the manifest")
    return attrs


@dataclass
class CohortMap:
    """Cohort labels from a TSV produced by a cohort-discovery method.

    The header's first column is ``speaker`` or ``cut_id`` (what the rows are keyed by); every
    further column is an attribute added to, or overriding, the cuts' attributes.
    """

    path: Path
    by: str
    columns: List[str]
    values: Dict[str, Dict[str, str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The (first) cohort attribute this map provides, e.g. ``auto_cohort``."""
        return self.columns[0]


def load_cohort_map(path: PathLike) -> CohortMap:
    """Read a cohort map TSV (``speaker\\tauto_cohort`` header, then one row per speaker).

    Blank lines and lines starting with ``#`` are skipped.  Errors name the file and line.
    """
    path = Path(path)
    header: Optional[List[str]] = None
    cohort_map: Optional[CohortMap] = None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            where = f"{path}:{line_no}"
            if header is None:
                header = fields
                if len(header) < 2 or header[0] not in ("speaker", "cut_id"):
                    raise ValueError(
                        f"{where}: a cohort map starts with a header 'speaker<TAB>key' or "
                        f"'cut_id<TAB>key', got {line!r}"
                    )
                if any(not name for name in header[1:]) or len(set(header)) != len(header):
                    raise ValueError(f"{where}: empty or repeated column name in header {line!r}")
                cohort_map = CohortMap(path=path, by=header[0], columns=header[1:])
                continue
            assert cohort_map is not None
            if len(fields) != len(header):
                raise ValueError(f"{where}: expected {len(header)} tab-separated fields, got {len(fields)}")
            ident = fields[0]
            if ident in cohort_map.values:
                raise ValueError(f"{where}: {cohort_map.by} {ident!r} appears twice")
            cohort_map.values[ident] = dict(zip(cohort_map.columns, fields[1:]))
    if cohort_map is None:
        raise ValueError(f"{path}: empty cohort map (no header)")
    if not cohort_map.values:
        raise ValueError(f"{path}: cohort map has a header but no rows")
    return cohort_map


def apply_cohort_maps(attrs: Mapping[str, Mapping[str, Any]], cohort_maps: Sequence[CohortMap]) -> CutAttributes:
    """A copy of ``attrs`` with the maps' columns added/overridden (later maps win).

    A speaker-keyed map labels every cut of that speaker.  Cuts the map does not cover keep
    what they had; if the key is then missing, :func:`cohort_wer` says so, naming the cut.
    """
    merged: CutAttributes = {cut_id: dict(values) for cut_id, values in attrs.items()}
    for cohort_map in cohort_maps:
        used = set()
        for cut_id, values in merged.items():
            ident = values.get("speaker") if cohort_map.by == "speaker" else cut_id
            if ident is not None:
                ident = str(ident)
            if ident is not None and ident in cohort_map.values:
                values.update(cohort_map.values[ident])
                used.add(ident)
        unused = len(cohort_map.values) - len(used)
        if unused:
            logger.warning(
                f"{cohort_map.path}: {unused} of {len(cohort_map.values)} {cohort_map.by} ids match no cut"
            )
    return merged


def cohort_keys_available(attrs: Mapping[str, Mapping[str, Any]], cut_ids: Iterable[str]) -> List[str]:
    """Attributes that make sensible cohort keys for ``cut_ids``: set on every cut, categorical
    (no float values: lat, lon, snr are measurements, not groups), with 2..MAX_SENSIBLE_COHORTS
    distinct values, and not ``speaker`` (one cohort per speaker is per-speaker WER, which the
    CLI writes separately)."""
    cut_ids = list(cut_ids)
    if not cut_ids:
        return []
    common = None
    for cut_id in cut_ids:
        names = set((attrs.get(cut_id) or {}).keys())
        common = names if common is None else common & names
    keys = []
    for name in sorted(common or ()):
        if name == "speaker":
            continue
        if any(isinstance(attrs[c][name], float) for c in cut_ids):
            continue
        distinct = {str(attrs[c][name]) for c in cut_ids}
        if 2 <= len(distinct) <= MAX_SENSIBLE_COHORTS:
            keys.append(name)
    return keys


# ---------------------------------------------------------------------------------------------
# per-utterance errors
# ---------------------------------------------------------------------------------------------


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
    """
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
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
    )


# ---------------------------------------------------------------------------------------------
# per-speaker WER (for the map and the speaker table)
# ---------------------------------------------------------------------------------------------


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


def write_speaker_tsv(points: Sequence[SpeakerPoint], path: PathLike) -> None:
    """``speaker-wer.tsv``: speaker, num_utts, num_words, errors, wer, lon, lat, region."""
    lines = ["speaker\tnum_utts\tnum_words\terrors\twer\tlon\tlat\tregion"]
    for p in points:
        lines.append(
            "\t".join(
                [
                    _clean_cell(p.speaker),
                    str(p.num_utts),
                    str(p.num_words),
                    str(p.errors),
                    _fmt(p.wer),
                    _fmt(p.lon, 4),
                    _fmt(p.lat, 4),
                    _clean_cell(p.region) if p.region is not None else "NA",
                ]
            )
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------

COHORT_TSV_COLUMNS = ("cohort", "num_speakers", "num_utts", "num_words", "wer", "ins", "del", "sub", "ci_low", "ci_high")


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "NA" if value is None else f"{value:.{digits}f}"


def _clean_cell(text: str) -> str:
    # a tab or newline inside a cohort name would shift the columns of the table
    return re.sub(r"[\t\r\n|]", " ", text)


def safe_key_name(key: str) -> str:
    """``key`` made safe for a file name (``cohort-wer-<key>.tsv``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def write_cohort_tsv(report: CohortReport, path: PathLike) -> None:
    """``cohort-wer-<key>.tsv``; WER and interval in percent with 2 decimals, ``NA`` if absent."""
    lines = ["\t".join(COHORT_TSV_COLUMNS)]
    for c in report.cohorts:
        lines.append(
            "\t".join(
                [
                    _clean_cell(c.cohort),
                    str(c.num_speakers),
                    str(c.num_utts),
                    str(c.num_words),
                    _fmt(c.wer),
                    str(c.ins),
                    str(c.dels),
                    str(c.subs),
                    _fmt(c.ci_low),
                    _fmt(c.ci_high),
                ]
            )
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_cohort_tsv(path: PathLike) -> List[Dict[str, str]]:
    """Rows of a ``cohort-wer-<key>.tsv`` as dicts of strings (for RESULTS.md writers)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def write_cohort_json(report: CohortReport, path: PathLike) -> None:
    """``cohort-summary-<key>.json``: everything in the report, machine-readable."""
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n")


def cohort_markdown(report: CohortReport) -> str:
    """Markdown table of the cohorts followed by the disparity summary."""
    level = f"{round(report.confidence * 100):g}%"
    lines = [
        f"### WER by `{report.key}` (overall {report.overall_wer:.2f}%, "
        f"{report.num_utts} utts, {report.num_speakers} speakers)",
        "",
        f"| cohort | speakers | utts | words | WER % | {level} CI | ins | del | sub |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report.cohorts:
        interval = "NA" if c.ci_low is None else f"[{c.ci_low:.2f}, {c.ci_high:.2f}]"
        lines.append(
            f"| {_clean_cell(c.cohort)} | {c.num_speakers} | {c.num_utts} | {c.num_words} | "
            f"{c.wer:.2f} | {interval} | {c.ins} | {c.dels} | {c.subs} |"
        )
    gap = "undefined (top cohort at 0% WER)" if report.relative_gap is None else f"{report.relative_gap:.1f}%"
    lines += [
        "",
        f"- cohort WERs: mean {report.mean_wer:.2f}, min {report.min_wer:.2f}, max {report.max_wer:.2f}, "
        f"std {report.std_wer:.2f} (population, ddof=0)",
        f"- relative gap, bottom `{report.bottom_cohort}` vs top `{report.top_cohort}`: {gap}",
        f"- bottom cohort share: {report.bottom_speaker_share:.1f}% of speakers, "
        f"{report.bottom_utt_share:.1f}% of utterances",
    ]
    if report.n_bootstrap > 0:
        lines.append(
            f"- intervals: percentile bootstrap over speakers, {report.n_bootstrap} resamples, seed {report.seed}"
        )
    if report.excluded_cohorts:
        lines.append(f"- left out (no reference words): {', '.join(report.excluded_cohorts)}")
    return "\n".join(lines) + "\n"


def write_cohort_markdown(report: CohortReport, path: PathLike) -> None:
    """``cohort-wer-<key>.md``, ready to paste into RESULTS.md."""
    atomic_write_text(path, cohort_markdown(report))


def write_cohort_report(report: CohortReport, out_dir: PathLike) -> Dict[str, Path]:
    """Write the tsv, json and md files of ``report`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = safe_key_name(report.key)
    paths = {
        "tsv": out_dir / f"cohort-wer-{name}.tsv",
        "json": out_dir / f"cohort-summary-{name}.json",
        "md": out_dir / f"cohort-wer-{name}.md",
    }
    write_cohort_tsv(report, paths["tsv"])
    write_cohort_json(report, paths["json"])
    write_cohort_markdown(report, paths["md"])
    return paths
