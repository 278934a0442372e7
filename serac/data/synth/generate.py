"""Generate the synthetic corpus: shards of speakers -> audio files + lhotse manifests -> merge.

Layout of an output directory ``DIR``::

    DIR/corpus.yaml                       seed + resolved config (a resumed run must match it)
    DIR/speakers.tsv                      every speaker with all attributes
    DIR/audio/<split>/<speaker>/<utt>.flac
    DIR/shards/nj                         the number of shards the shard manifests were cut for
    DIR/shards/{recordings,supervisions}.J.jsonl.gz

and after :func:`merge_shards`, in the manifest directory::

    <prefix>_{recordings,supervisions}_{train,dev,test,adapt}.jsonl.gz

Every utterance is a pure function of (seed, speaker, utterance index): its text, its acoustic
condition and its noise come from random streams derived from those three numbers, and espeak-ng
runs from a pristine state per utterance (see :mod:`serac.data.synth.espeak`). Hence the audio
and the merged manifests are bit-identical whatever the number of jobs, and an interrupted run
resumes where it stopped: audio files are written atomically and reused, a shard whose
manifests exist is skipped.
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import itertools
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from serac.data.synth import acoustics
from serac.data.synth.config import load_config
from serac.data.synth.espeak import Espeak
from serac.data.synth.geography import nearest
from serac.data.synth.grammar import City, Grammar
from serac.data.synth.speakers import (
    SPLIT_PREFIX,
    SPLITS,
    Speaker,
    weighted_choice,
    _SPLIT_CODE,
    draw_speakers,
    write_speakers_tsv,
)

log = logging.getLogger("serac.synth")

# Mean duration of one utterance (seconds) with the default config, measured on 1000 utterances
# (bench/bench_synth_generation.py prints the current value). Used only to turn --hours into a
# number of utterances per speaker.
MEAN_UTT_SECONDS = 2.12

SUPERVISION_CUSTOM_KEYS = (
    "accent", "voice", "age_band", "zip", "city", "state", "lat", "lon", "region", "condition",
    "snr_db", "noise_type", "rt60_s", "intent", "demo_urbanicity", "demo_income_band",
    "demo_majority_age_band", "demo_education",
)


@dataclass(frozen=True)
class UttPlan:
    """Everything that decides one utterance, before any audio is made."""

    id: str
    speaker: str
    split: str
    index: int
    intent: str
    text: str
    condition: str
    noise_type: str
    snr_db: float
    rt60_s: float
    drr_db: float
    lead: int         # leading silence, samples at 16 kHz
    trail: int
    peak_dbfs: float
    rate: int
    pitch: int
    espeak_seed: int
    audio_seed: int


class Corpus:
    """A resolved corpus definition: config + seed -> speakers, grammar, utterance plans."""

    def __init__(self, cfg: Dict[str, Any], seed: int) -> None:
        self.cfg = cfg
        self.seed = int(seed)
        t = cfg["text"]
        self.grammar = Grammar(t["zipf_exponent"], t["num_cities"], t["local_place_prob"])
        self.speakers: List[Speaker] = draw_speakers(self.seed, cfg)
        self._city_points = [(c.lat, c.lon) for c in self.grammar.cities]

    def local_cities(self, spk: Speaker) -> List[City]:
        k = int(self.cfg["text"]["num_local_cities"])
        return [self.grammar.cities[i] for i in nearest(spk.lat, spk.lon, self._city_points, k)]

    def utt_rng(self, spk: Speaker, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 104729, _SPLIT_CODE[spk.split], spk.index, index, stream])

    def plan(self, spk: Speaker, index: int, local: Optional[Sequence[City]] = None) -> UttPlan:
        cfg = self.cfg
        local = self.local_cities(spk) if local is None else local
        utt = self.grammar.sample(self.utt_rng(spk, index, 0), local)

        rng = self.utt_rng(spk, index, 1)
        rc = cfg["regions"][spk.region]
        uc = cfg["urbanicity"][spk.demo_urbanicity]
        probs = {c: p * uc["condition_factor"].get(c, 1.0) for c, p in rc["conditions"].items()}
        condition = weighted_choice(rng, probs)
        noise_type = weighted_choice(rng, uc["noise_types"])
        lo, hi = rc["snr_db"][condition]
        snr = rng.uniform(lo, hi) + cfg["income_snr_shift_db"].get(spk.demo_income_band, 0.0)
        rt_lo, rt_hi = rc["rt60_s"]
        rt60 = rng.uniform(rt_lo, rt_hi)
        drr = rng.uniform(0.0, 10.0)  # direct-to-reverberant ratio of the synthetic room
        a = cfg["audio"]
        sr = a["sample_rate"]
        lead = int(rng.uniform(*a["lead_silence_s"]) * sr)
        trail = int(rng.uniform(*a["trail_silence_s"]) * sr)
        peak = rng.uniform(*a["peak_dbfs"])
        sc = cfg["speaker"]
        rate = int(round(spk.rate * (1.0 + rng.uniform(-sc["utt_rate_jitter"], sc["utt_rate_jitter"]))))
        pitch = int(np.clip(round(spk.pitch + rng.uniform(-sc["utt_pitch_jitter"], sc["utt_pitch_jitter"])), 0, 100))
        espeak_seed = int(rng.integers(1, 2**31 - 1))
        audio_seed = int(rng.integers(0, 2**62))
        return UttPlan(
            id=f"{spk.id}-{index:04d}", speaker=spk.id, split=spk.split, index=index,
            intent=utt.intent, text=utt.text, condition=condition, noise_type=noise_type,
            snr_db=round(float(snr), 1), rt60_s=round(float(rt60), 2) if condition == "reverb" else 0.0,
            drr_db=round(float(drr), 1), lead=lead, trail=trail, peak_dbfs=round(float(peak), 2),
            rate=rate, pitch=pitch, espeak_seed=espeak_seed, audio_seed=audio_seed,
        )

    def render(self, plan: UttPlan, spk: Speaker, timings: Optional[Dict[str, float]] = None) -> np.ndarray:
        """int16 samples at 16 kHz for ``plan``; adds seconds spent to ``timings`` if given."""
        t0 = time.perf_counter()
        tts = Espeak.get()
        raw = tts.synth(plan.text.lower(), spk.voice, rate=plan.rate, pitch=plan.pitch,
                        pitch_range=spk.pitch_range, seed=plan.espeak_seed)
        x = acoustics.trim_silence(acoustics.resample_to_16k(raw, tts.sample_rate) / 32768.0)
        if x.size == 0:
            raise RuntimeError(f"espeak-ng produced no audio for {plan.id}: {plan.text!r}")
        t1 = time.perf_counter()
        y, _ = acoustics.apply_condition(
            np.random.default_rng(plan.audio_seed), x, plan.condition, plan.noise_type,
            plan.snr_db, plan.rt60_s, plan.drr_db, plan.lead, plan.trail,
        )
        out = acoustics.to_int16(y, plan.peak_dbfs)
        if timings is not None:
            t2 = time.perf_counter()
            timings["synthesis"] = timings.get("synthesis", 0.0) + (t1 - t0)
            timings["acoustics"] = timings.get("acoustics", 0.0) + (t2 - t1)
        return out


# --------------------------------------------------------------------------- manifests


# Manifest rows are written as the dicts lhotse's Recording.to_dict() / SupervisionSegment.to_dict()
# produce (the merge validates them with lhotse); building them directly keeps the generation
# jobs free of lhotse's torch import (~200 MB and a second of start-up per job).


def recording_dict(plan: UttPlan, path: str, num_samples: int, sr: int = 16000) -> Dict[str, Any]:
    return {
        "id": plan.id,
        "sources": [{"type": "file", "channels": [0], "source": path}],
        "sampling_rate": sr,
        "num_samples": int(num_samples),
        "duration": num_samples / sr,
        "channel_ids": [0],
    }


def supervision_dict(plan: UttPlan, spk: Speaker, duration: float) -> Dict[str, Any]:
    custom = {
        "accent": spk.accent, "voice": spk.voice, "age_band": spk.age_band, "zip": spk.zip,
        "city": spk.city, "state": spk.state, "lat": spk.lat, "lon": spk.lon,
        "region": spk.region, "condition": plan.condition, "snr_db": plan.snr_db,
        "noise_type": plan.noise_type, "rt60_s": plan.rt60_s, "intent": plan.intent,
        **spk.demographics(),
    }
    return {
        "id": plan.id, "recording_id": plan.id, "start": 0.0, "duration": duration, "channel": 0,
        "text": plan.text, "language": "English", "speaker": spk.id, "gender": spk.gender,
        "custom": custom,
    }


class AtomicJsonlGz:
    """Write JSON lines to ``path`` through a temp file; gzip without name or time stamp
    (byte-identical output for identical content); moved into place only on success."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = f"{path}.tmp.{os.getpid()}"

    def __enter__(self) -> "AtomicJsonlGz":
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._raw = open(self.tmp, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
        self._txt = io.TextIOWrapper(self._gz, encoding="utf-8")
        return self

    def write(self, obj: Dict[str, Any]) -> None:
        self._txt.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def commit(self) -> None:
        """Close and move into place now (instead of at context exit)."""
        if self._txt is not None:
            self._txt.close()
            self._raw.close()
            self._txt = None
            os.replace(self.tmp, self.path)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            if self._txt is not None:
                self._txt.close()
                self._raw.close()
                self._txt = None
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


def iter_jsonl_gz(path: str) -> Iterator[Dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_audio(path: str, samples: np.ndarray, sr: int, fmt: str) -> None:
    """Write int16 mono audio atomically."""
    import soundfile as sf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    sf.write(tmp, samples, sr, format=fmt.upper(), subtype="PCM_16")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- corpus settings


def _corpus_yaml(seed: int, cfg: Dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump({"seed": int(seed), "config": cfg}, sort_keys=True)


def check_or_write_settings(out_dir: str, seed: int, cfg: Dict[str, Any]) -> None:
    """Record seed + config in DIR/corpus.yaml; refuse to mix two corpora in one directory."""
    path = os.path.join(out_dir, "corpus.yaml")
    text = _corpus_yaml(seed, cfg)
    if os.path.exists(path):
        with open(path) as f:
            if f.read() != text:
                raise RuntimeError(
                    f"{path} records a different seed/config than this run; "
                    f"use another --out-dir (or remove {out_dir}) to generate a different corpus"
                )
        return
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _check_or_write_nj(out_dir: str, nj: int) -> None:
    shard_dir = os.path.join(out_dir, "shards")
    os.makedirs(shard_dir, exist_ok=True)
    path = os.path.join(shard_dir, "nj")
    if os.path.exists(path):
        with open(path) as f:
            old = f.read().strip()
        if old != str(nj):
            raise RuntimeError(
                f"{shard_dir} holds shards for nj={old}, this run uses nj={nj}; remove {shard_dir} "
                f"(the audio is kept and reused) or use --nj {old}"
            )
        return
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{nj}\n")
    os.replace(tmp, path)


def shard_paths(out_dir: str, job: int) -> Tuple[str, str]:
    d = os.path.join(out_dir, "shards")
    return os.path.join(d, f"recordings.{job}.jsonl.gz"), os.path.join(d, f"supervisions.{job}.jsonl.gz")


def audio_path(out_dir: str, plan: UttPlan, fmt: str) -> str:
    return os.path.join(out_dir, "audio", plan.split, plan.speaker, f"{plan.id}.{fmt}")


# --------------------------------------------------------------------------- generation


def generate_shard(out_dir: str, job: int, nj: int, seed: int, cfg: Dict[str, Any]) -> Dict[str, float]:
    """Generate shard ``job`` (1-based) of ``nj``: the speakers at positions k with k % nj == job - 1.

    Returns statistics (utterances, audio seconds, wall seconds). A shard whose manifests exist
    is skipped; existing audio files are reused.
    """
    if not 1 <= job <= nj:
        raise ValueError(f"--job must be in 1..{nj}, got {job}")
    check_or_write_settings(out_dir, seed, cfg)
    _check_or_write_nj(out_dir, nj)
    rec_path, sup_path = shard_paths(out_dir, job)
    if os.path.exists(rec_path) and os.path.exists(sup_path):
        log.info("shard %d/%d: manifests exist, skipping", job, nj)
        return {"utterances": 0, "audio_seconds": 0.0, "wall_seconds": 0.0, "skipped": 1}

    import soundfile as sf

    corpus = Corpus(cfg, seed)
    if not os.path.exists(os.path.join(out_dir, "speakers.tsv")):
        write_speakers_tsv(corpus.speakers, os.path.join(out_dir, "speakers.tsv"))
    mine = [s for k, s in enumerate(corpus.speakers) if k % nj == job - 1]
    fmt = cfg["audio"]["format"]
    sr = int(cfg["audio"]["sample_rate"])
    t_start = time.time()
    n_utts, n_reused, audio_s = 0, 0, 0.0
    with AtomicJsonlGz(rec_path) as rw, AtomicJsonlGz(sup_path) as sw:
        for k, spk in enumerate(mine):
            local = corpus.local_cities(spk)
            for i in range(1, spk.num_utts + 1):
                plan = corpus.plan(spk, i, local)
                path = audio_path(out_dir, plan, fmt)
                if os.path.exists(path):
                    num_samples = sf.info(path).frames
                    n_reused += 1
                else:
                    samples = corpus.render(plan, spk)
                    write_audio(path, samples, sr, fmt)
                    num_samples = samples.size
                rec = recording_dict(plan, path, num_samples, sr)
                rw.write(rec)
                sw.write(supervision_dict(plan, spk, rec["duration"]))
                n_utts += 1
                audio_s += rec["duration"]
            if (k + 1) % 10 == 0 or k + 1 == len(mine):
                el = time.time() - t_start
                log.info(
                    "shard %d/%d: %d/%d speakers, %d utterances (%d reused), %.2f h audio, %.0fx real time",
                    job, nj, k + 1, len(mine), n_utts, n_reused, audio_s / 3600, audio_s / max(el, 1e-9),
                )
    return {"utterances": n_utts, "audio_seconds": audio_s, "wall_seconds": time.time() - t_start,
            "reused": n_reused, "skipped": 0}


def manifest_paths(manifest_dir: str, prefix: str = "synth") -> Dict[str, Tuple[str, str]]:
    """split -> (recordings path, supervisions path), lhotse naming ``<prefix>_<type>_<split>``."""
    return {
        s: (os.path.join(manifest_dir, f"{prefix}_recordings_{s}.jsonl.gz"),
            os.path.join(manifest_dir, f"{prefix}_supervisions_{s}.jsonl.gz"))
        for s in SPLITS
    }


_PREFIX_TO_SPLIT = {v: k for k, v in SPLIT_PREFIX.items()}
_SPLIT_ORDER = {s: i for i, s in enumerate(SPLITS)}


def _order_key(d: Dict[str, Any]) -> Tuple[int, str]:
    return (_SPLIT_ORDER[_PREFIX_TO_SPLIT[d["id"][:2]]], d["id"])


def _validate_chunk(recs: List[Dict[str, Any]], sups: List[Dict[str, Any]]) -> None:
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.qa import validate_recordings_and_supervisions

    validate_recordings_and_supervisions(
        RecordingSet.from_recordings(Recording.from_dict(dict(r)) for r in recs),
        SupervisionSet.from_segments(SupervisionSegment.from_dict(dict(s)) for s in sups),
    )


def merge_shards(
    out_dir: str, manifest_dir: str, nj: int, prefix: str = "synth", validate: bool = True,
    chunk: int = 2000,
) -> Dict[str, Tuple[str, str]]:
    """Combine the ``nj`` shard manifests into per-split manifests (streaming, bounded memory).

    Output is sorted by utterance id within each split, so it does not depend on ``nj``. Every
    chunk of recordings/supervisions is checked with lhotse's
    ``validate_recordings_and_supervisions``. Files are written to temporaries and moved into
    place only when all splits are complete. Skipped when all outputs exist.
    """
    outputs = manifest_paths(manifest_dir, prefix)
    if all(os.path.exists(p) for pair in outputs.values() for p in pair):
        log.info("merged manifests exist in %s, skipping merge", manifest_dir)
        return outputs
    shards = [shard_paths(out_dir, j) for j in range(1, nj + 1)]
    missing = [p for pair in shards for p in pair if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard manifests missing, e.g. {missing[0]}; run the shards first")
    speakers_path = os.path.join(out_dir, "speakers.tsv")
    expected: Optional[Dict[str, int]] = None
    if os.path.exists(speakers_path):
        from serac.data.synth.speakers import read_speakers_tsv

        expected = {s: 0 for s in SPLITS}
        for row in read_speakers_tsv(speakers_path):
            expected[row["split"]] += int(row["num_utts"])

    recs = heapq.merge(*(iter_jsonl_gz(r) for r, _ in shards), key=_order_key)
    sups = heapq.merge(*(iter_jsonl_gz(s) for _, s in shards), key=_order_key)
    counts = {s: 0 for s in SPLITS}
    # Files move into place only when the with-block completes without error: a failed or
    # killed merge leaves no partial outputs behind (and a rerun merges again).
    with contextlib.ExitStack() as stack:
        writers = {
            s: (stack.enter_context(AtomicJsonlGz(r)), stack.enter_context(AtomicJsonlGz(p)))
            for s, (r, p) in outputs.items()
        }
        buf_r: List[Dict[str, Any]] = []
        buf_s: List[Dict[str, Any]] = []
        for r, s in itertools.zip_longest(recs, sups):
            if r is None or s is None or r["id"] != s["recording_id"]:
                raise RuntimeError(f"shard manifests out of step: recording {r and r['id']} vs "
                                   f"supervision {s and s['id']}")
            split = _PREFIX_TO_SPLIT[r["id"][:2]]
            writers[split][0].write(r)
            writers[split][1].write(s)
            counts[split] += 1
            if validate:
                buf_r.append(r)
                buf_s.append(s)
                if len(buf_r) >= chunk:
                    _validate_chunk(buf_r, buf_s)
                    buf_r, buf_s = [], []
        if validate and buf_r:
            _validate_chunk(buf_r, buf_s)
        if expected is not None and counts != expected:
            raise RuntimeError(f"merged utterance counts {counts} differ from speakers.tsv {expected}")
    log.info("merged %s utterances into %s", counts, manifest_dir)
    return outputs


def generate_corpus(
    out_dir: str, manifest_dir: str, seed: int = 1, cfg: Optional[Dict[str, Any]] = None,
    nj: int = 1, prefix: str = "synth",
) -> Dict[str, Tuple[str, str]]:
    """All shards in this process, then merge (small corpora, tests, notebooks)."""
    cfg = cfg or load_config()
    for job in range(1, nj + 1):
        generate_shard(out_dir, job, nj, seed, cfg)
    return merge_shards(out_dir, manifest_dir, nj, prefix)


def utts_per_speaker_for_hours(hours: float, num_speakers: int) -> int:
    """Utterances per training speaker giving about ``hours`` of training audio."""
    return max(1, int(math.ceil(hours * 3600.0 / (num_speakers * MEAN_UTT_SECONDS))))


def corpus_summary(corpus: Corpus) -> Dict[str, Any]:
    """Speakers, utterances, estimated hours, accents and regions per split; grammar facts."""
    out: Dict[str, Any] = {}
    for split in SPLITS:
        spks = [s for s in corpus.speakers if s.split == split]
        acc: Dict[str, int] = {}
        reg: Dict[str, int] = {}
        for s in spks:
            acc[s.accent] = acc.get(s.accent, 0) + 1
            reg[s.region] = reg.get(s.region, 0) + 1
        out[split] = {
            "speakers": len(spks),
            "utterances": sum(s.num_utts for s in spks),
            "est_hours": round(sum(s.num_utts for s in spks) * MEAN_UTT_SECONDS / 3600, 2),
            "accents": dict(sorted(acc.items())),
            "regions": dict(sorted(reg.items())),
        }
    out["grammar"] = {"intents": list(corpus.grammar.intents), "vocab_size": corpus.grammar.vocab_size}
    return out


__all__ = [
    "Corpus", "UttPlan", "generate_shard", "merge_shards", "generate_corpus", "manifest_paths",
    "utts_per_speaker_for_hours", "corpus_summary", "SUPERVISION_CUSTOM_KEYS",
]
