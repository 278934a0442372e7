"""Cuts of a split and their fbank features, streamed into one LilcomChunkyWriter archive.

kaldifeat computes the features when importable (fast); lhotse's own Fbank otherwise (the two agree to ~6e-4,
measured). Everything streams, one cut at a time: the manifests are read lazily, the cuts are made per
recording, features go straight to the archive and cuts straight to the manifest, so memory does not grow with
the corpus (bench/bench_memory.py measures it). The archive and the cuts manifest are written under temporary
names and renamed when complete: a failed or killed run leaves no half archive behind.

Cuts: one per supervision, whose id is the supervision id (so tools that parse a speaker from an utterance id
keep working). A recording with exactly one supervision covering it becomes one cut of the whole recording; a
recording with several supervisions, or a shorter one, is trimmed to them (segmented, long-form corpora).
Multi-channel audio is downmixed to mono (the channel average) and the cut records it in
``custom["downmixed_channels"]``.
"""
from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
from lhotse import CutSet, LilcomChunkyWriter, MonoCut, Recording, SupervisionSegment, combine, load_manifest_lazy
from lhotse.cut import Cut, MixedCut, MultiCut
from lhotse.features import Features
from lhotse.qa import validate_features
from lhotse.utils import fastcopy

from serac.data.validate import DataError, ValidationReport, format_duration, iter_manifest, manifest_paths
from serac.utils import atomic_path

# a supervision "covers" its recording when it is within this of both ends (as lhotse's default tolerance)
COVER_TOLERANCE = 1e-3


def kaldifeat_available() -> bool:
    try:
        import kaldifeat  # noqa: F401

        return True
    except Exception:
        return False


def make_fbank_extractor(num_mel_bins: int = 80, sampling_rate: int = 16000, backend: str = "auto"):
    """``backend``: "kaldifeat", "lhotse" or "auto" (kaldifeat when importable)."""
    if backend == "auto":
        backend = "kaldifeat" if kaldifeat_available() else "lhotse"
    if backend == "kaldifeat":
        from lhotse.features.kaldifeat import KaldifeatFbank, KaldifeatFbankConfig, KaldifeatFrameOptions, \
            KaldifeatMelOptions

        return KaldifeatFbank(KaldifeatFbankConfig(
            frame_opts=KaldifeatFrameOptions(sampling_rate=sampling_rate),
            mel_opts=KaldifeatMelOptions(num_bins=num_mel_bins), device="cpu"))
    if backend == "lhotse":
        from lhotse import Fbank, FbankConfig

        return Fbank(FbankConfig(num_mel_bins=num_mel_bins, sampling_rate=sampling_rate))
    raise ValueError(f"unknown fbank backend {backend!r} (kaldifeat, lhotse, auto)")


class SplitCuts:
    """The cuts of one split, made from its manifests each time they are iterated (lazy and re-iterable, so
    lhotse's lazy operations and speed perturbation can chain on it). ``report`` (steps/validate_data.sh)
    names the recordings and supervisions to leave out; without one, nothing is left out."""

    def __init__(self, manifest_dir: str | Path, prefix: str, split: str,
                 report: Optional[ValidationReport] = None) -> None:
        self.rec_path, self.sup_path = manifest_paths(manifest_dir, prefix, split)
        for path in (self.rec_path, self.sup_path):
            if not path.is_file():
                raise DataError(f"{path}: manifest not found (did the manifest stage run?)")
        self.skip_recordings = report.skipped_recording_ids() if report else set()
        self.skip_supervisions = report.skipped_supervision_ids() if report else set()
        # without a report, find out whether the supervisions can be merged with the recordings in one pass
        self.in_order = report.supervisions_in_recording_order if report else None

    def _supervisions(self) -> Iterator[SupervisionSegment]:
        seen = set()
        for item in iter_manifest(self.sup_path):
            if item["id"] in seen or item["id"] in self.skip_supervisions:  # a verbatim repeat, or bad
                continue
            seen.add(item["id"])
            yield SupervisionSegment.from_dict(item)

    def _recordings(self) -> Iterator[Recording]:
        seen = set()
        for item in iter_manifest(self.rec_path):
            if item["id"] in seen or item["id"] in self.skip_recordings:
                continue
            seen.add(item["id"])
            yield Recording.from_dict(item)

    def _grouped(self) -> Iterator[Tuple[Recording, List[SupervisionSegment]]]:
        if self.in_order is None:
            order = {r.id: i for i, r in enumerate(self._recordings())}
            indices = [order.get(s.recording_id, -1) for s in self._supervisions()]
            self.in_order = all(a <= b for a, b in zip(indices, indices[1:]))
        if self.in_order:  # one streaming pass over both manifests (the usual case: one script wrote both)
            sups = self._supervisions()
            pending = next(sups, None)
            for rec in self._recordings():
                group = []
                while pending is not None and pending.recording_id == rec.id:
                    group.append(pending)
                    pending = next(sups, None)
                yield rec, group
            return
        logging.info(f"{self.sup_path}: supervisions are not in the order of {self.rec_path}; indexing them in "
                     "memory (sort both manifests by recording to stream them)")
        by_recording: Dict[str, List[SupervisionSegment]] = {}
        for sup in self._supervisions():
            by_recording.setdefault(sup.recording_id, []).append(sup)
        for rec in self._recordings():
            yield rec, by_recording.get(rec.id, [])

    def __iter__(self) -> Iterator[Cut]:
        for rec, sups in self._grouped():
            if not sups:
                continue
            yield from cuts_of_recording(rec, sups)


def cuts_of_recording(rec: Recording, sups: List[SupervisionSegment]) -> List[Cut]:
    """One cut per supervision (id = supervision id): the whole recording when one supervision covers it,
    otherwise the recording trimmed to each supervision (the others' overlapping parts dropped)."""
    multi = rec.num_channels > 1
    cls = MultiCut if multi else MonoCut
    cut = cls(id=rec.id, start=0, duration=rec.duration, channel=rec.channel_ids if multi else rec.channel_ids[0],
              recording=rec, supervisions=sups)
    if len(sups) == 1 and sups[0].start <= COVER_TOLERANCE and sups[0].end >= rec.duration - COVER_TOLERANCE:
        return [fastcopy(cut, id=sups[0].id)]
    # lhotse names a trimmed cut holding one supervision after it; multi-channel cuts stay multi-channel
    # (keep_all_channels) so that the feature stage downmixes them rather than keeping one channel
    return list(cut.trim_to_supervisions(keep_overlapping=False, keep_all_channels=multi))


def load_split_cuts(manifest_dir: str | Path, prefix: str, split: str,
                    report: Optional[ValidationReport] = None) -> CutSet:
    return CutSet(SplitCuts(manifest_dir, prefix, split, report))


# --- feature extraction -------------------------------------------------------------------------------------

_worker_extractor = None


def _init_worker(num_mel_bins: int, sampling_rate: int, backend: str) -> None:
    import torch

    global _worker_extractor
    torch.set_num_threads(1)
    _worker_extractor = make_fbank_extractor(num_mel_bins, sampling_rate, backend)


def _samples_of(cut: Cut) -> Tuple[np.ndarray, int]:
    """(mono samples of shape (1, N), channels they were downmixed from (1: none))."""
    samples = cut.load_audio()
    channels = samples.shape[0]
    if channels > 1:
        samples = samples.mean(axis=0, keepdims=True, dtype=np.float64).astype(samples.dtype)
    bad = samples.size - int(np.isfinite(samples).sum())
    if bad:
        raise DataError(f"{bad} NaN/inf audio samples")
    return samples, channels


def _features_of(cut: Cut, extractor=None) -> Tuple[np.ndarray, int, int]:
    """(features, channels the audio was downmixed from, samples)."""
    extractor = extractor if extractor is not None else _worker_extractor
    samples, channels = _samples_of(cut)
    feats = extractor.extract(samples=samples, sampling_rate=cut.sampling_rate)
    if not np.isfinite(feats).all():
        raise DataError("non-finite features")
    return feats, channels, samples.shape[1]


def describe_cut(cut: Cut) -> str:
    """A cut's id and where its audio comes from, for error messages."""
    try:
        recs = [cut.recording] if hasattr(cut, "recording") and cut.recording is not None else \
            [t.cut.recording for t in getattr(cut, "tracks", []) if getattr(t.cut, "recording", None)]
        sources = [s.source for r in recs for s in r.sources if isinstance(s.source, str)]
    except Exception:  # noqa: BLE001 (a description must never fail)
        sources = []
    return f"cut {cut.id}" + (f" (audio {' '.join(sources)})" if sources else "")


@dataclass
class FbankSummary:
    cuts: int = 0
    seconds: float = 0.0
    downmixed: int = 0
    source_rates: Dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        down = f"; {self.downmixed} multi-channel cuts downmixed to mono" if self.downmixed else ""
        return f"{self.cuts} cuts, {format_duration(self.seconds)}{down}"


def write_fbank(cuts: Iterable[Cut], archive_path: str | Path, cuts_path: str | Path, num_mel_bins: int = 80,
                sampling_rate: int = 16000, backend: str = "auto", num_jobs: int = 1,
                speed_perturb: Optional[List[float]] = None, log_every_s: float = 30.0,
                expected_cuts: Optional[int] = None) -> FbankSummary:
    """Resample to ``sampling_rate`` where needed, optionally add speed-perturbed copies, compute fbank and
    write the archive ``archive_path`` (.lca) and the cuts manifest ``cuts_path``, both atomically. A cut that
    cannot be read raises DataError naming it and its audio file (validate the split first to skip those)."""
    archive_path = Path(archive_path)
    if archive_path.suffix != ".lca":
        archive_path = archive_path.with_name(archive_path.name + ".lca")
    cuts = CutSet(cuts)
    summary = FbankSummary()
    rates: Dict[str, int] = {}
    original = cuts

    def count_rate(cut: Cut) -> Cut:
        rates[str(cut.sampling_rate)] = rates.get(str(cut.sampling_rate), 0) + 1
        return cut

    cuts = original.map(count_rate).resample(sampling_rate)
    if speed_perturb:
        cuts = combine(cuts, *[original.resample(sampling_rate).perturb_speed(f) for f in speed_perturb])
    extractor = make_fbank_extractor(num_mel_bins, sampling_rate, backend)
    logging.info(f"computing {type(extractor).__name__} ({num_mel_bins} bins at {sampling_rate} Hz, {num_jobs} "
                 f"job(s)) -> {archive_path}" + (f", speed perturbation {speed_perturb}" if speed_perturb else ""))
    total = f" / {expected_cuts * (1 + len(speed_perturb or []))}" if expected_cuts else ""
    started = last_log = time.monotonic()
    with atomic_path(cuts_path) as tmp_cuts, atomic_path(archive_path) as tmp_archive:
        with LilcomChunkyWriter(tmp_archive) as writer, CutSet.open_writer(tmp_cuts) as cut_writer:
            for cut, (feats, channels, num_samples) in _extract_in_order(cuts, extractor, num_jobs, num_mel_bins,
                                                           sampling_rate, backend):
                key = writer.write(str(uuid.uuid4()), feats)
                # as lhotse's extract_from_samples_and_store describes them, but naming the final archive
                features = Features(
                    start=cut.start, duration=round(num_samples / cut.sampling_rate, ndigits=8),
                    type=extractor.name, num_frames=feats.shape[0],
                    num_features=feats.shape[1], frame_shift=extractor.frame_shift, sampling_rate=cut.sampling_rate,
                    channels=0 if channels > 1 else cut.channel, storage_type=writer.name,
                    storage_path=str(archive_path), storage_key=key)
                validate_features(features, feats_data=feats)
                if channels > 1:
                    cut = MonoCut(id=cut.id, start=cut.start, duration=cut.duration, channel=0,
                                  recording=cut.recording, supervisions=[fastcopy(s, channel=0)
                                                                         for s in cut.supervisions],
                                  custom={**(cut.custom or {}), "downmixed_channels": channels})
                    summary.downmixed += 1
                elif isinstance(cut, MixedCut):
                    # a mixture (e.g. a simulated conversation) becomes one cut of its mixed features, as lhotse's
                    # MixedCut.compute_and_store_features makes it; its supervisions already carry their offsets.
                    # The mixture is its own recording: the features and supervisions name the cut, so lhotse's
                    # checks (validate_for_asr in every batch) find them consistent
                    features = fastcopy(features, recording_id=cut.id)
                    cut = MonoCut(id=cut.id, start=0, duration=cut.duration, channel=0, recording=None,
                                  supervisions=[fastcopy(s, channel=0, recording_id=cut.id) for s in cut.supervisions],
                                  custom=getattr(cut, "custom", None))
                cut_writer.write(fastcopy(cut, features=features))
                summary.cuts += 1
                summary.seconds += cut.duration
                if time.monotonic() - last_log >= log_every_s:
                    last_log = time.monotonic()
                    logging.info(f"fbank: {summary.cuts}{total} cuts ({format_duration(summary.seconds)} of audio) "
                                 f"in {last_log - started:.0f}s")
    summary.source_rates = rates
    logging.info(f"fbank: done, {summary.line()} in {time.monotonic() - started:.0f}s -> {cuts_path}")
    return summary


def _extract_in_order(cuts: CutSet, extractor, num_jobs: int, num_mel_bins: int, sampling_rate: int,
                      backend: str) -> Iterator[Tuple[Cut, Tuple[np.ndarray, int, int]]]:
    """(cut, (features, source channels, samples)) in the order of ``cuts``; with num_jobs > 1 computed by worker
    processes, at most 4 * num_jobs cuts in flight (memory stays bounded)."""
    if num_jobs <= 1:
        for cut in cuts:
            try:
                yield cut, _features_of(cut, extractor)
            except Exception as e:  # noqa: BLE001
                raise DataError(f"{describe_cut(cut)}: {type(e).__name__}: {e}") from e
        return
    import multiprocessing

    window: List[Tuple[Cut, Future]] = []
    with ProcessPoolExecutor(num_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(num_mel_bins, sampling_rate, backend)) as pool:
        def drain_one():
            cut, fut = window.pop(0)
            try:
                return cut, fut.result()
            except Exception as e:  # noqa: BLE001
                raise DataError(f"{describe_cut(cut)}: {type(e).__name__}: {e}") from e

        for cut in cuts:
            window.append((cut, pool.submit(_features_of, cut)))
            if len(window) >= 4 * num_jobs:
                yield drain_one()
        while window:
            yield drain_one()


def compute_fbank(cuts: Iterable[Cut], storage_path: str | Path, num_mel_bins: int = 80, sampling_rate: int = 16000,
                  backend: str = "auto", num_jobs: int = 1, speed_perturb: Optional[list] = None,
                  cuts_path: Optional[str | Path] = None) -> CutSet:
    """write_fbank, returning the written cuts (lazily). ``cuts_path`` defaults to ``<storage_path>.jsonl.gz``."""
    storage_path = Path(storage_path)
    cuts_path = Path(cuts_path) if cuts_path else storage_path.with_name(storage_path.name + ".jsonl.gz")
    write_fbank(cuts, storage_path, cuts_path, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate,
                backend=backend, num_jobs=num_jobs, speed_perturb=speed_perturb)
    return load_manifest_lazy(cuts_path)
