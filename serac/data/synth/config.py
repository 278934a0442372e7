"""The generative priors of the synthetic corpus, with their defaults.

Everything that decides *who speaks how, where, and under which conditions* lives in one nested
dict, :data:`DEFAULT_CONFIG`. A YAML file given with ``--config`` is deep-merged over it (only the
keys you want to change); ``python -m serac.bin.generate_synth_corpus --dump-config`` prints the
resolved config.

Disparity design (why a model trained on the mixture is worse for some cohorts):

* Accent rarity. ``en-US`` is the majority almost everywhere, but each region has its own accent
  mixture (``regions.<r>.accents``). Two accents are rare nationally but dominate one region
  each: West Midlands English (``en-GB-x-gbcwmd``) in the West North Central division and
  Scottish English (``en-GB-scotland``) in the Mountain division. Nationally every non-US accent
  makes up only ~3-8 % of training speakers.
* Harsh acoustics. Each region has its own probabilities of the conditions clean / noisy /
  reverb / telephone and its own SNR and RT60 ranges; the rare-accent regions are the rural,
  harsh ones (more telephone band-limiting, lower SNR, longer reverberation), so accent and
  channel effects compound geographically -- as real regional disparities do.
* Geodemographics (synthetic). Rural zips make telephone more likely and favour wind/road-like
  noise over babble (``urbanicity``); low-income zips shift SNR down (``income_snr_shift_db``);
  older speakers speak slower and lower (``age_bands``). These links are invented for the
  benchmark; they are not claims about real people.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

from serac.config import deep_merge

ACCENT_MIX_DEFAULT = {
    "en-US": 0.78, "en-US-nyc": 0.04, "en": 0.05, "en-GB-x-rp": 0.03, "en-029": 0.03,
    "en-GB-scotland": 0.02, "en-GB-x-gbclan": 0.03, "en-GB-x-gbcwmd": 0.02,
}

_CONDITIONS_DEFAULT = {"clean": 0.60, "noisy": 0.20, "reverb": 0.12, "telephone": 0.08}
_SNR_DEFAULT = {"clean": [35.0, 50.0], "noisy": [10.0, 25.0], "reverb": [25.0, 40.0],
                "telephone": [15.0, 30.0]}
_HARSH_SNR = {"clean": [30.0, 45.0], "noisy": [4.0, 14.0], "reverb": [18.0, 30.0],
              "telephone": [10.0, 22.0]}


def _region(weight, accents, conditions=None, snr=None, rt60=(0.2, 0.5)) -> Dict[str, Any]:
    return {
        "weight": weight,
        "accents": accents,
        "conditions": dict(conditions or _CONDITIONS_DEFAULT),
        "snr_db": copy.deepcopy(snr or _SNR_DEFAULT),
        "rt60_s": list(rt60),
    }


DEFAULT_CONFIG: Dict[str, Any] = {
    # Accent voices used (espeak-ng language names); every region mix is over these.
    "accents": list(ACCENT_MIX_DEFAULT),
    # US Census divisions: share of speakers (~2020 population share), P(accent | region),
    # P(condition | region), SNR range per condition and RT60 range of the synthetic rooms.
    "regions": {
        "new_england": _region(0.046, {
            "en-US": 0.55, "en-GB-x-rp": 0.20, "en": 0.10, "en-US-nyc": 0.08, "en-029": 0.03,
            "en-GB-scotland": 0.02, "en-GB-x-gbclan": 0.01, "en-GB-x-gbcwmd": 0.01}),
        "middle_atlantic": _region(0.128, {
            "en-US-nyc": 0.50, "en-US": 0.35, "en-029": 0.07, "en": 0.03, "en-GB-x-rp": 0.02,
            "en-GB-scotland": 0.01, "en-GB-x-gbclan": 0.01, "en-GB-x-gbcwmd": 0.01},
            conditions={"clean": 0.50, "noisy": 0.30, "reverb": 0.15, "telephone": 0.05}),
        "east_north_central": _region(0.142, {
            "en-US": 0.78, "en": 0.06, "en-US-nyc": 0.04, "en-GB-x-gbclan": 0.04,
            "en-GB-x-rp": 0.02, "en-029": 0.02, "en-GB-scotland": 0.02, "en-GB-x-gbcwmd": 0.02}),
        "west_north_central": _region(0.065, {
            "en-GB-x-gbcwmd": 0.50, "en-US": 0.40, "en": 0.03, "en-GB-x-gbclan": 0.03,
            "en-GB-scotland": 0.02, "en-US-nyc": 0.01, "en-GB-x-rp": 0.005, "en-029": 0.005},
            conditions={"clean": 0.30, "noisy": 0.30, "reverb": 0.10, "telephone": 0.30},
            snr=_HARSH_SNR, rt60=(0.3, 0.7)),
        "south_atlantic": _region(0.203, {
            "en-US": 0.62, "en-029": 0.25, "en-US-nyc": 0.05, "en": 0.03, "en-GB-x-rp": 0.02,
            "en-GB-scotland": 0.01, "en-GB-x-gbclan": 0.01, "en-GB-x-gbcwmd": 0.01}),
        "east_south_central": _region(0.058, {
            "en-US": 0.85, "en-029": 0.04, "en": 0.03, "en-GB-x-gbclan": 0.03,
            "en-GB-scotland": 0.02, "en-US-nyc": 0.01, "en-GB-x-rp": 0.01, "en-GB-x-gbcwmd": 0.01},
            conditions={"clean": 0.50, "noisy": 0.25, "reverb": 0.10, "telephone": 0.15}),
        "west_south_central": _region(0.125, {
            "en-US": 0.85, "en-029": 0.04, "en": 0.03, "en-GB-scotland": 0.02,
            "en-GB-x-gbclan": 0.02, "en-US-nyc": 0.02, "en-GB-x-rp": 0.01, "en-GB-x-gbcwmd": 0.01}),
        "mountain": _region(0.077, {
            "en-GB-scotland": 0.50, "en-US": 0.40, "en": 0.03, "en-GB-x-gbclan": 0.03,
            "en-GB-x-rp": 0.01, "en-US-nyc": 0.01, "en-029": 0.01, "en-GB-x-gbcwmd": 0.01},
            conditions={"clean": 0.30, "noisy": 0.35, "reverb": 0.15, "telephone": 0.20},
            snr=_HARSH_SNR, rt60=(0.4, 0.9)),
        "pacific": _region(0.156, {
            "en-US": 0.68, "en": 0.08, "en-GB-x-gbclan": 0.08, "en-GB-x-rp": 0.06, "en-029": 0.04,
            "en-US-nyc": 0.03, "en-GB-scotland": 0.02, "en-GB-x-gbcwmd": 0.01},
            conditions={"clean": 0.60, "noisy": 0.20, "reverb": 0.15, "telephone": 0.05}),
    },
    # Zip urbanicity (derived from real zip density / city size): sampling weight of a zip
    # (a stand-in for population), multipliers on the region's condition probabilities
    # (renormalized), and the mixture of background noise types.
    "urbanicity": {
        "urban": {"zip_weight": 3.0, "condition_factor": {"noisy": 1.3, "telephone": 0.6},
                  "noise_types": {"babble": 0.6, "pink": 0.3, "brown": 0.1}},
        "suburban": {"zip_weight": 2.0, "condition_factor": {},
                     "noise_types": {"babble": 0.4, "pink": 0.4, "brown": 0.2}},
        "rural": {"zip_weight": 1.0, "condition_factor": {"telephone": 1.8, "clean": 0.9},
                  "noise_types": {"babble": 0.15, "pink": 0.35, "brown": 0.5}},
    },
    # SNR shift (dB) by the zip's synthetic income band (cheaper devices, noisier homes).
    "income_snr_shift_db": {"low": -3.0, "middle": 0.0, "high": 2.0},
    # Speaker age bands: population share, speaking-rate factor, pitch offset (espeak 0-100 scale).
    "age_bands": {
        "18-29": {"weight": 0.22, "rate_factor": 1.05, "pitch_offset": 3.0},
        "30-44": {"weight": 0.27, "rate_factor": 1.00, "pitch_offset": 0.0},
        "45-64": {"weight": 0.31, "rate_factor": 0.96, "pitch_offset": -2.0},
        "65+": {"weight": 0.20, "rate_factor": 0.90, "pitch_offset": -5.0},
    },
    # Probability that a speaker's age band is the zip's (synthetic) majority age band.
    "age_follows_zip_prob": 0.5,
    "speaker": {
        "female_prob": 0.5,
        "base_rate_wpm": 165.0,     # espeak-ng words per minute
        "rate_log_sd": 0.07,        # speaker rate: base * age factor * exp(N(0, sd))
        "rate_range_wpm": [120, 220],
        "pitch_sd": 8.0,            # espeak pitch 0-100 around 50
        "pitch_range": [15, 85],
        "pitch_range_mean": 50.0,   # espeak intonation range 0-100
        "pitch_range_sd": 12.0,
        "utt_rate_jitter": 0.04,    # per-utterance relative rate change (uniform +-)
        "utt_pitch_jitter": 3.0,    # per-utterance pitch change (uniform +-)
    },
    "text": {
        "zipf_exponent": 1.0,      # slot fillers: P(rank r) ~ 1/(r+1)^s
        "num_cities": 300,         # most populous US cities in the place-name slots
        "local_place_prob": 0.3,   # a place slot names one of the speaker's nearest cities
        "num_local_cities": 5,
    },
    "audio": {
        "sample_rate": 16000,
        "lead_silence_s": [0.1, 0.3],
        "trail_silence_s": [0.1, 0.3],
        "peak_dbfs": [-9.0, -1.0],   # random gain: the peak lands uniformly in this range
        "format": "flac",            # flac or wav
    },
    # Split sizes. Train is a population draw; dev/test are population draws topped up so that
    # every accent and region has at least the given number of speakers; adapt has a fixed
    # number of speakers per region. utts_per_speaker is per split.
    "splits": {
        "train": {"speakers": 150, "utts_per_speaker": 24},
        "dev": {"speakers": 20, "utts_per_speaker": 12, "min_per_accent": 3, "min_per_region": 2},
        "test": {"speakers": 40, "utts_per_speaker": 12, "min_per_accent": 4, "min_per_region": 3},
        "adapt": {"speakers_per_region": 3, "utts_per_speaker": 24},
    },
}

CONDITIONS = ("clean", "noisy", "reverb", "telephone")
NOISE_TYPES = ("babble", "pink", "brown")


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """DEFAULT_CONFIG, deep-merged with the YAML file ``path`` and then ``overrides``; validated."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if path:
        import yaml

        with open(path) as f:
            cfg = deep_merge(cfg, yaml.safe_load(f) or {})
    if overrides:
        cfg = deep_merge(cfg, overrides)
    validate_config(cfg)
    return cfg


def validate_config(cfg: Dict[str, Any]) -> None:
    from serac.data.synth.espeak import ENGLISH_ACCENTS
    from serac.data.synth.geography import CENSUS_DIVISIONS

    for a in cfg["accents"]:
        if a not in ENGLISH_ACCENTS:
            raise ValueError(f"unknown accent {a!r}; known: {ENGLISH_ACCENTS}")
    for r, rc in cfg["regions"].items():
        if r not in CENSUS_DIVISIONS:
            raise ValueError(f"unknown region {r!r}; known: {list(CENSUS_DIVISIONS)}")
        if set(rc["accents"]) - set(cfg["accents"]):
            raise ValueError(f"region {r}: accents {set(rc['accents']) - set(cfg['accents'])} not in accents")
        if sum(rc["accents"].values()) <= 0 or min(rc["accents"].values()) < 0:
            raise ValueError(f"region {r}: bad accent mixture")
        if set(rc["conditions"]) - set(CONDITIONS):
            raise ValueError(f"region {r}: conditions must be among {CONDITIONS}")
        for c in CONDITIONS:
            lo, hi = rc["snr_db"][c]
            if lo > hi:
                raise ValueError(f"region {r}: snr_db.{c} low > high")
    if set(cfg["regions"]) != set(CENSUS_DIVISIONS):
        missing = set(CENSUS_DIVISIONS) - set(cfg["regions"])
        raise ValueError(f"every census division needs a region entry; missing {sorted(missing)}")
    if cfg["audio"]["format"] not in ("flac", "wav"):
        raise ValueError("audio.format must be flac or wav")
