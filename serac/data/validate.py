"""The data check every recipe's feature stage runs before computing features (steps/validate_data.sh).

One pass over a split's recording and supervision manifests and the audio file headers (samples are read only
for floating-point files, the only ones that can hold NaN). What is checked, and what happens (docs/faults.md):

- error, naming the manifest (and line): a manifest that is not valid gzip / JSON (truncated or corrupt); two
  different entries with the same id; a supervision of a recording the split does not have; more than
  ``max_skipped_fraction`` of the recordings or supervisions skipped (something systematic is wrong).
- skipped and counted, named on the console and in the report: a missing or unreadable audio file; a WAV file
  shorter than its header says (truncated: its transcript would not match); a file whose sampling rate,
  channel count or length disagrees with the manifest; floating-point audio with NaN / inf samples; a
  supervision that starts before 0 or ends after the audio; the supervisions of a skipped recording.
- deduplicated and counted: an entry repeated verbatim (it would otherwise be trained on twice).
- reported: the source sampling rates and channel counts (multi-channel audio is downmixed to mono by the
  feature stage); supervisions whose speaking rate (letters per second) is far from the split's median, mostly
  too fast. A WAV header claiming 16 kHz over 8 kHz samples cannot be told from the file itself (it is valid audio at twice the
  speed); when the manifest was made from the file it agrees with the header, and such a file shows up only as
  a speaking-rate outlier (twice as fast) and as a minority sampling rate.

Memory is O(number of ids) (the ids and a few numbers: about 0.3 KB per utterance, for the duplicate and
recording checks), never O(audio) nor O(manifest objects).
"""
from __future__ import annotations

import gzip
import json
import logging
import math
import statistics
import struct
import zlib
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

PathLike = str | Path

# How far (seconds) a supervision may pass the end of its audio, and a file's length may differ from its manifest.
DURATION_TOLERANCE = 0.025
# A supervision is a speaking-rate outlier when its letters per second are more than FAST times the split's
# median, or less than the median / SLOW (or 4 robust standard deviations of the log rate away, whichever is
# wider). Fast is the suspicious side: a header claiming twice the true rate doubles it, while slow utterances
# (pauses, silence around a short word) are common.
SPEAKING_RATE_FAST = 1.8
SPEAKING_RATE_SLOW = 3.0
# How many items a console line names before "and N more".
NAMED_ON_CONSOLE = 5


class DataError(ValueError):
    """Bad input that stops the data stage; the message names the file (and item)."""


def manifest_paths(manifest_dir: PathLike, prefix: str, split: str) -> Tuple[Path, Path]:
    """The recording and supervision manifests of a split (serac's naming: docs/your-corpus.md)."""
    manifest_dir = Path(manifest_dir)
    return (manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz",
            manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz")


def iter_manifest_lines(path: PathLike) -> Iterator[Tuple[int, str, Dict[str, Any]]]:
    """(line number, raw line, parsed dict) of a .jsonl or .jsonl.gz manifest, streaming. A corrupt or
    truncated file raises DataError naming the path (gzip and zlib errors otherwise do not)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (did the manifest stage run?)")
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, line, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not a JSON line ({e}); the manifest is corrupt") from e
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise DataError(f"{path}: corrupt or truncated manifest after line {lineno} ({type(e).__name__}: {e}); "
                        "re-run the stage that wrote it") from e


def check_readable(path: PathLike) -> None:
    """Read a .gz manifest through once (no parsing: about a second per 100 MB) so that a corrupt or truncated
    one is named now, not as a bare zlib error deep inside a data loader."""
    path = Path(path)
    if path.suffix != ".gz":
        return
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt or truncated manifest ({type(e).__name__}: {e}); re-run the stage "
                        "that wrote it") from e


def iter_manifest(path: PathLike) -> Iterator[Dict[str, Any]]:
    for _, _, item in iter_manifest_lines(path):
        yield item


def wav_truncation(path: PathLike) -> Optional[Tuple[int, int]]:
    """(bytes the WAV header's data chunk declares, bytes present) when a RIFF/WAVE file is shorter than its
    header says; None when it is complete or not a WAV file. libsndfile silently reads what is there."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = Path(path).stat().st_size
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"data":
                    present = size - f.tell()
                    # 0 and 0xFFFFFFFF: streaming writers that never filled the size in
                    if chunk_size not in (0, 0xFFFFFFFF) and present < chunk_size:
                        return chunk_size, present
                    return None
                f.seek(chunk_size + (chunk_size & 1), 1)
    except OSError:
        return None


@dataclass
class AudioInfo:
    sampling_rate: int
    channels: int
    frames: int
    floating_point: bool


def audio_info(path: str) -> AudioInfo:
    """The header facts of an audio file (soundfile; lhotse's readers for formats libsndfile lacks)."""
    try:
        import soundfile

        info = soundfile.info(path)
        return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames),
                         info.subtype in ("FLOAT", "DOUBLE"))
    except Exception:
        from lhotse.audio.backend import info as lhotse_info

        info = lhotse_info(path)
        return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), False)


def non_finite_samples(path: str) -> int:
    import soundfile

    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    return int(data.size - np.isfinite(data).sum())


@dataclass
class ValidationReport:
    """What validate_split found; saved as JSON for the feature stage, which skips the same items."""

    prefix: str
    split: str
    recordings: int = 0                    # kept (after skips and deduplication)
    supervisions: int = 0
    hours: float = 0.0                     # supervised audio kept
    # reason -> [id, detail] of the recordings / supervisions the feature stage leaves out
    skipped_recordings: Dict[str, List[List[str]]] = field(default_factory=dict)
    skipped_supervisions: Dict[str, List[List[str]]] = field(default_factory=dict)
    duplicates: Dict[str, int] = field(default_factory=dict)        # "recordings"/"supervisions" -> dropped
    warnings: Dict[str, List[str]] = field(default_factory=dict)    # reason -> items, not dropped
    sampling_rates: Dict[str, int] = field(default_factory=dict)    # "8000" -> recordings
    channels: Dict[str, int] = field(default_factory=dict)          # "2" -> recordings
    supervisions_in_recording_order: bool = True
    unchecked_sources: int = 0             # url / command / memory sources: headers not read

    def skipped_recording_ids(self) -> set:
        return {item[0] for items in self.skipped_recordings.values() for item in items}

    def skipped_supervision_ids(self) -> set:
        return {item[0] for items in self.skipped_supervisions.values() for item in items}

    def save(self, path: PathLike) -> None:
        from serac.utils import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @staticmethod
    def load(path: PathLike) -> "ValidationReport":
        try:
            return ValidationReport(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise DataError(f"{path}: cannot read the validation report ({e}); re-run steps/validate_data.sh") from e

    def summary_lines(self) -> List[str]:
        """The console summary: one line of totals, one per skip / duplicate / warning reason."""

        def named(items: list) -> str:
            shown = [f"{i[0]} ({i[1]})" if isinstance(i, list) and i[1] else i[0] if isinstance(i, list) else i
                     for i in items[:NAMED_ON_CONSOLE]]
            more = f" and {len(items) - NAMED_ON_CONSOLE} more" if len(items) > NAMED_ON_CONSOLE else ""
            return ", ".join(shown) + more

        rates = ", ".join(f"{r} Hz x {n}" for r, n in sorted(self.sampling_rates.items(), key=lambda x: int(x[0])))
        lines = [f"{self.prefix} {self.split}: {self.recordings} recordings, {self.supervisions} supervisions, "
                 f"{format_duration(self.hours * 3600)} of speech; source rates {rates or 'none'}"]
        multi = {c: n for c, n in self.channels.items() if c != "1"}
        if multi:
            lines.append(f"  {sum(multi.values())} multi-channel recordings "
                         f"({', '.join(f'{n} with {c} channels' for c, n in sorted(multi.items()))}): "
                         "downmixed to mono (the channel average) by the feature stage")
        for kind, skipped in (("recording", self.skipped_recordings), ("supervision", self.skipped_supervisions)):
            for reason, ids in sorted(skipped.items()):
                lines.append(f"  SKIPPED {len(ids)} {kind}(s): {reason}: {named(ids)}")
        for kind, n in sorted(self.duplicates.items()):
            lines.append(f"  DEDUPLICATED {n} repeated {kind} line(s) (identical entries; each kept once)")
        for reason, items in sorted(self.warnings.items()):
            lines.append(f"  WARNING {len(items)}: {reason}: {named(items)}")
        if self.unchecked_sources:
            lines.append(f"  {self.unchecked_sources} audio sources are not files (url/command/memory): not checked")
        return lines


def format_duration(seconds: float) -> str:
    """Hours for large amounts, minutes or seconds for small ones (0.00 h says nothing)."""
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _line_hash(item: Dict[str, Any]) -> int:
    return hash(json.dumps(item, sort_keys=True))


def _check_audio(rec: Dict[str, Any]) -> Tuple[Optional[str], bool]:
    """(why the recording must be skipped or None, whether any source could not be checked)."""
    unchecked = False
    total_channels = 0
    for src in rec.get("sources", []):
        total_channels += len(src.get("channels", [0]))
        if src.get("type") != "file":
            unchecked = True
            continue
        path = src["source"]
        if not Path(path).is_file():
            return "audio file missing", unchecked
        truncated = wav_truncation(path)
        if truncated is not None:
            return (f"WAV shorter than its header says ({truncated[1]} of {truncated[0]} data bytes: truncated; "
                    "its transcript would not match)"), unchecked
        try:
            info = audio_info(path)
        except Exception as e:  # noqa: BLE001 (every reader error means the same: unusable)
            return f"audio unreadable ({type(e).__name__})", unchecked
        if info.sampling_rate != rec["sampling_rate"]:
            return (f"the manifest says {rec['sampling_rate']} Hz, the file's header {info.sampling_rate} Hz "
                    "(which is right cannot be told: re-make the manifest from the audio)"), unchecked
        if info.channels != len(src.get("channels", [0])):
            return (f"the manifest says {len(src.get('channels', [0]))} channel(s), the file has "
                    f"{info.channels}"), unchecked
        if not rec.get("transforms") and abs(info.frames - rec["num_samples"]) > \
                DURATION_TOLERANCE * rec["sampling_rate"]:
            return (f"the manifest says {rec['num_samples']} samples, the file holds {info.frames} "
                    f"({info.frames / info.sampling_rate:.2f}s of {rec['duration']:.2f}s)"), unchecked
        if info.floating_point:
            bad = non_finite_samples(path)
            if bad:
                return f"{bad} NaN/inf samples", unchecked
    return None, unchecked


def validate_split(manifest_dir: PathLike, prefix: str, split: str, max_skipped_fraction: float = 0.05,
                   check_audio: bool = True) -> ValidationReport:
    """Check one split (see the module docstring); raise DataError on what must stop the stage."""
    rec_path, sup_path = manifest_paths(manifest_dir, prefix, split)
    for path in (rec_path, sup_path):
        if not path.is_file():
            raise DataError(f"{path}: manifest not found (did the manifest stage run?)")
    report = ValidationReport(prefix=prefix, split=split)
    skip_rec: Dict[str, List[str]] = {}
    skip_sup: Dict[str, List[str]] = {}
    # O(ids), compactly (about 0.3 KB per utterance): id -> order, then per order the line hash, the duration and
    # a state (0 kept, 1 skipped, 2 kept and supervised)
    rec_order: Dict[str, int] = {}
    rec_hash, rec_duration, rec_state = array("q"), array("d"), bytearray()
    rates: Counter = Counter()
    channels: Counter = Counter()
    dup_rec = dup_sup = 0
    for lineno, _, rec in iter_manifest_lines(rec_path):
        try:
            rid, sr, duration = rec["id"], int(rec["sampling_rate"]), float(rec["duration"])
            int(rec["num_samples"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{rec_path}:{lineno}: not a lhotse recording (missing/bad {e})") from e
        h = _line_hash(rec)
        if rid in rec_order:
            if rec_hash[rec_order[rid]] != h:
                raise DataError(f"{rec_path}:{lineno}: recording id {rid} appears twice with different contents")
            dup_rec += 1
            continue
        reason, unchecked = _check_audio(rec) if check_audio else (None, False)
        report.unchecked_sources += int(unchecked)
        if reason is not None:
            sources = " ".join(s.get("source", "?") for s in rec.get("sources", []) if isinstance(s.get("source"), str))
            skip_rec.setdefault(reason, []).append([rid, sources])
        else:
            rates[str(sr)] += 1
            channels[str(sum(len(s.get("channels", [0])) for s in rec.get("sources", [])))] += 1
        rec_order[rid] = len(rec_hash)
        rec_hash.append(h)
        rec_duration.append(duration)
        rec_state.append(0 if reason is None else 1)

    sup_hash: Dict[str, int] = {}
    last_order = -1
    log_rates = array("d")  # of the kept supervisions with text
    for lineno, _, sup in iter_manifest_lines(sup_path):
        try:
            sid, rid = sup["id"], sup["recording_id"]
            start, duration = float(sup["start"]), float(sup["duration"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{sup_path}:{lineno}: not a lhotse supervision (missing/bad {e})") from e
        h = _line_hash(sup)
        if sid in sup_hash:
            if sup_hash[sid] != h:
                raise DataError(f"{sup_path}:{lineno}: supervision id {sid} appears twice with different contents")
            dup_sup += 1
            continue
        sup_hash[sid] = h
        if rid not in rec_order:
            raise DataError(f"{sup_path}:{lineno}: supervision {sid} is of recording {rid}, which {rec_path} "
                            "does not have")
        order = rec_order[rid]
        rec_duration_s = rec_duration[order]
        if order < last_order:
            report.supervisions_in_recording_order = False
        last_order = max(last_order, order)
        if rec_state[order] == 1:
            skip_sup.setdefault("its recording is skipped (above)", []).append([sid, ""])
            continue
        if start < -1e-6 or start + duration > rec_duration_s + DURATION_TOLERANCE:
            skip_sup.setdefault("outside its recording's audio", []).append(
                [sid, f"{start:.2f}s-{start + duration:.2f}s of {rec_duration_s:.2f}s"])
            continue
        if duration <= 0:
            skip_sup.setdefault("zero duration", []).append([sid, ""])
            continue
        rec_state[order] = 2
        report.supervisions += 1
        report.hours += duration / 3600
        rate = _speaking_rate(sup)
        if rate:
            log_rates.append(math.log(rate))

    report.recordings = sum(1 for state in rec_state if state != 1)
    report.skipped_recordings, report.skipped_supervisions = skip_rec, skip_sup
    report.duplicates = {k: n for k, n in (("recording", dup_rec), ("supervision", dup_sup)) if n}
    report.sampling_rates, report.channels = dict(rates), dict(channels)
    if rec_state.count(0):
        report.warnings["recordings without any usable supervision (no cut is made of them)"] = sorted(
            rid for rid, order in rec_order.items() if rec_state[order] == 0)
    limits = speaking_rate_limits(log_rates)
    if limits is not None:
        skipped = report.skipped_supervision_ids()
        outliers = [f"{sup['id']} ({math.exp(x):.1f} letters/s vs median {math.exp(limits[0]):.1f})"
                    for sup in iter_manifest(sup_path) if sup["id"] not in skipped
                    for x in [math.log(_speaking_rate(sup) or 1e-9)] if _is_outlier(x, limits)]
        # the second pass also sees verbatim repeats; name each once
        outliers = list(dict.fromkeys(outliers))
        if outliers:
            report.warnings["speaking rate far from the split's median (a wrong sampling rate in a header, a "
                            "transcript of other audio?)"] = outliers
    for kind, skipped, total in (("recordings", skip_rec, len(rec_hash)),
                                 ("supervisions", skip_sup, len(sup_hash))):
        n = sum(len(v) for v in skipped.values())
        if total and n / total > max_skipped_fraction:
            raise DataError("\n".join(report.summary_lines()) + f"\n{rec_path.parent}: {n} of {total} {prefix} "
                            f"{split} {kind} would be skipped (more than --max-skipped-fraction "
                            f"{max_skipped_fraction}): fix the data")
    return report


def _speaking_rate(sup: Dict[str, Any]) -> float:
    """Letters (and digits) per second of a supervision's text; 0 without text or duration."""
    letters = sum(ch.isalnum() for ch in (sup.get("text") or ""))
    return letters / sup["duration"] if letters and sup["duration"] > 0 else 0.0


def speaking_rate_limits(log_rates: "array", min_count: int = 10) -> Optional[Tuple[float, float, float]]:
    """(median, fast limit, slow limit) of the log speaking rates when some lie outside the limits, else None."""
    if len(log_rates) < min_count:
        return None
    median = statistics.median(log_rates)
    mad = statistics.median(abs(x - median) for x in log_rates) * 1.4826
    limits = (median, max(math.log(SPEAKING_RATE_FAST), 4 * mad), max(math.log(SPEAKING_RATE_SLOW), 4 * mad))
    return limits if any(_is_outlier(x, limits) for x in log_rates) else None


def _is_outlier(log_rate: float, limits: Tuple[float, float, float]) -> bool:
    median, fast, slow = limits
    return log_rate - median > fast or median - log_rate > slow


def empty_mel_bins(source_rate: int, target_rate: int, num_mel_bins: int, low_freq: float = 20.0) -> int:
    """How many of Kaldi's mel bins (low_freq 20 Hz up to the target Nyquist) lie wholly above the source
    Nyquist: upsampled audio has no energy there, so those bins only hold the floor."""
    if source_rate >= target_rate:
        return 0

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(low_freq), mel(target_rate / 2)
    step = (hi - lo) / (num_mel_bins + 1)
    nyquist = mel(source_rate / 2)
    return sum(1 for i in range(num_mel_bins) if lo + i * step >= nyquist)  # left edge of bin i


def feature_plan_lines(report: ValidationReport, target_rate: int, num_mel_bins: int) -> List[str]:
    """What the feature stage will do with these rates, and a warning when it upsamples."""
    lines = []
    for rate, n in sorted(report.sampling_rates.items(), key=lambda x: int(x[0])):
        rate_i = int(rate)
        if rate_i == target_rate:
            lines.append(f"  {n} recordings at {rate_i} Hz: fbank as is ({num_mel_bins} bins)")
        elif rate_i > target_rate:
            lines.append(f"  {n} recordings at {rate_i} Hz: resampled down to {target_rate} Hz "
                         f"(--sampling-rate), then {num_mel_bins} bins")
        else:
            empty = empty_mel_bins(rate_i, target_rate, num_mel_bins)
            lines.append(f"  WARNING {n} recordings at {rate_i} Hz are UPSAMPLED to {target_rate} Hz: nothing above "
                         f"{rate_i // 2} Hz, so {empty} of the {num_mel_bins} mel bins hold only the floor; "
                         f"consider --sampling-rate {rate_i} and fewer bins (docs/your-corpus.md)")
    return lines


def log_report(report: ValidationReport) -> None:
    for line in report.summary_lines():
        logging.info(line)
