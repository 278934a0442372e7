"""Synthetic speakers: accent voice, variant, gender, age, pitch/rate, and a real US home zip.

Speakers of every split are drawn from their own random stream, derived from (seed, split), so
that changing the size of one split never changes the speakers of another, and the draw is the
same in every parallel job. Splits are disjoint by construction (ids carry the split prefix).

* train: a population draw -- regions by population share, accents by each region's mixture,
  both stratified (systematic sampling) so that even a small corpus has the intended shares.
* adapt: ``speakers_per_region`` speakers per region (accent from the region's mixture), held
  out of train/dev/test for regional fine-tuning experiments.
* dev, test: a population draw topped up so that every accent has at least ``min_per_accent`` and
  every region at least ``min_per_region`` speakers (top-up speakers of an accent live where that
  accent lives: region ~ P(region | accent)).
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional

import numpy as np

from serac.data.synth.espeak import FEMALE_VARIANTS, MALE_VARIANTS
from serac.data.synth.geography import AGE_BANDS, sample_zip, zip_demographics, zips_by_region

SPLITS = ("train", "dev", "test", "adapt")
SPLIT_PREFIX = {"train": "tr", "dev": "dv", "test": "te", "adapt": "ad"}
_SPLIT_CODE = {"train": 1, "dev": 2, "test": 3, "adapt": 4}


@dataclass(frozen=True)
class Speaker:
    id: str
    split: str
    index: int            # index within the split
    num_utts: int
    accent: str           # espeak-ng language voice, e.g. en-GB-scotland
    variant: str          # espeak-ng voice variant, e.g. f2
    voice: str            # accent+variant as given to espeak
    gender: str           # m / f (from the variant)
    age_band: str
    pitch: int            # espeak pitch 0-100
    pitch_range: int      # espeak intonation range 0-100
    rate: int             # espeak words per minute
    zip: str
    city: str
    state: str
    lat: float
    lon: float
    region: str
    demo_urbanicity: str
    demo_income_band: str
    demo_majority_age_band: str
    demo_education: str

    def demographics(self) -> Dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("demo_")}


def weighted_choice(rng: np.random.Generator, weights: Dict[str, float]) -> str:
    keys = list(weights)
    w = np.array([max(float(weights[k]), 0.0) for k in keys])
    cdf = np.cumsum(w / w.sum())
    return keys[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(keys) - 1)]


def _systematic(rng: np.random.Generator, weights: Dict[str, float], n: int) -> List[str]:
    """``n`` draws from ``weights`` by systematic sampling: each key's count is within one of its
    expectation (a small corpus still gets its accent and region shares right)."""
    if n <= 0:
        return []
    keys = list(weights)
    w = np.array([max(float(weights[k]), 0.0) for k in keys])
    cdf = np.cumsum(w / w.sum())
    u = (rng.random() + np.arange(n)) / n
    return [keys[min(int(i), len(keys) - 1)] for i in np.searchsorted(cdf, u, side="right")]


def population_draw(
    rng: np.random.Generator, cfg: Dict[str, Any], split: str, n: int, num_utts: int, first_index: int = 1
) -> List[Speaker]:
    """``n`` speakers drawn from the joint P(region, accent) = weight(region) P(accent | region),
    stratified (systematic sampling over the cells ordered by accent, so that each accent's count
    is within one of its expectation), in random order."""
    joint = {
        (r, a): rc["weight"] * p
        for a in cfg["accents"]
        for r, rc in cfg["regions"].items()
        for p in [rc["accents"].get(a, 0.0)]
        if p > 0
    }
    keys = list(joint)
    picks = _systematic(rng, {i: joint[k] for i, k in enumerate(keys)}, n)
    pairs = [keys[i] for i in picks]
    order = rng.permutation(len(pairs))
    return [
        draw_speaker(rng, cfg, split, first_index + j, num_utts, region=pairs[o][0], accent=pairs[o][1])
        for j, o in enumerate(order)
    ]


def split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), 7919, _SPLIT_CODE[split]])


def draw_speaker(
    rng: np.random.Generator,
    cfg: Dict[str, Any],
    split: str,
    index: int,
    num_utts: int,
    region: Optional[str] = None,
    accent: Optional[str] = None,
) -> Speaker:
    """One speaker; ``region`` / ``accent`` condition the draw when given."""
    regions = cfg["regions"]
    if region is None and accent is None:
        region = weighted_choice(rng, {r: rc["weight"] for r, rc in regions.items()})
    elif region is None:
        region = weighted_choice(rng, {r: rc["weight"] * rc["accents"].get(accent, 0.0) for r, rc in regions.items()})
    if accent is None:
        accent = weighted_choice(rng, regions[region]["accents"])
    uw = {u: uc["zip_weight"] for u, uc in cfg["urbanicity"].items()}
    z = sample_zip(rng, region, uw)
    demo = zip_demographics(z)

    sc = cfg["speaker"]
    female = rng.random() < sc["female_prob"]
    variants = FEMALE_VARIANTS if female else MALE_VARIANTS
    variant = variants[int(rng.integers(len(variants)))]
    ages = cfg["age_bands"]
    if rng.random() < cfg["age_follows_zip_prob"] and demo["demo_majority_age_band"] in ages:
        age = demo["demo_majority_age_band"]
    else:
        age = weighted_choice(rng, {a: ac["weight"] for a, ac in ages.items()})
    lo, hi = sc["pitch_range"]
    pitch = int(np.clip(round(50 + ages[age]["pitch_offset"] + rng.normal(0, sc["pitch_sd"])), lo, hi))
    prange = int(np.clip(round(rng.normal(sc["pitch_range_mean"], sc["pitch_range_sd"])), 10, 90))
    lo, hi = sc["rate_range_wpm"]
    rate = sc["base_rate_wpm"] * ages[age]["rate_factor"] * float(np.exp(rng.normal(0, sc["rate_log_sd"])))
    rate = int(np.clip(round(rate), lo, hi))
    return Speaker(
        id=f"{SPLIT_PREFIX[split]}{index:05d}", split=split, index=index, num_utts=num_utts,
        accent=accent, variant=variant, voice=f"{accent}+{variant}", gender="f" if female else "m",
        age_band=age, pitch=pitch, pitch_range=prange, rate=rate, zip=z.zip, city=z.city,
        state=z.state, lat=z.lat, lon=z.lon, region=region, **demo,
    )


def _draw_eval_split(seed: int, cfg: Dict[str, Any], split: str) -> List[Speaker]:
    sc = cfg["splits"][split]
    rng = split_rng(seed, split)
    n_utts = int(sc["utts_per_speaker"])
    out: List[Speaker] = population_draw(rng, cfg, split, int(sc["speakers"]), n_utts)
    for region in cfg["regions"]:
        while sum(s.region == region for s in out) < int(sc.get("min_per_region", 0)):
            out.append(draw_speaker(rng, cfg, split, len(out) + 1, n_utts, region=region))
    for accent in cfg["accents"]:
        if not any(rc["accents"].get(accent, 0) > 0 for rc in cfg["regions"].values()):
            continue  # an accent no region produces cannot be topped up
        while sum(s.accent == accent for s in out) < int(sc.get("min_per_accent", 0)):
            out.append(draw_speaker(rng, cfg, split, len(out) + 1, n_utts, accent=accent))
    return out


def draw_speakers(seed: int, cfg: Dict[str, Any]) -> List[Speaker]:
    """All speakers of the corpus, ordered train, dev, test, adapt (then by index)."""
    splits = cfg["splits"]
    speakers: List[Speaker] = []
    tr = splits["train"]
    rng = split_rng(seed, "train")
    speakers += population_draw(rng, cfg, "train", int(tr["speakers"]), int(tr["utts_per_speaker"]))
    speakers += _draw_eval_split(seed, cfg, "dev")
    speakers += _draw_eval_split(seed, cfg, "test")
    ad = splits["adapt"]
    rng = split_rng(seed, "adapt")
    for region in cfg["regions"]:
        if not zips_by_region()[region]:
            continue
        for _ in range(int(ad["speakers_per_region"])):
            n = sum(s.split == "adapt" for s in speakers) + 1
            speakers.append(draw_speaker(rng, cfg, "adapt", n, int(ad["utts_per_speaker"]), region=region))
    return speakers


SPEAKER_COLUMNS = [f.name for f in fields(Speaker)]


def write_speakers_tsv(speakers: List[Speaker], path: str) -> None:
    """One row per speaker with every attribute; written atomically."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(SPEAKER_COLUMNS)
        for s in speakers:
            d = asdict(s)
            w.writerow([d[c] for c in SPEAKER_COLUMNS])
    os.replace(tmp, path)


def read_speakers_tsv(path: str) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


__all__ = ["Speaker", "SPLITS", "draw_speaker", "draw_speakers", "write_speakers_tsv",
           "read_speakers_tsv", "AGE_BANDS"]
