#!/usr/bin/env python3
"""Check a corpus's lhotse manifests before feature extraction, and choose the features from its sampling rate.

For every split it needs ``<manifest-dir>/<prefix>_{recordings,supervisions}_<split>.jsonl.gz``, every
supervision's recording present, and a non-empty transcript; it lists the cohort attributes the supervisions
carry (``speaker``, ``gender``, ``language`` and every ``custom`` field) and fails, naming them, when a
``--cohort-keys`` attribute is missing from a split that will be scored. On success the last stdout line is
``<sampling-rate> <num-mel-bins> <native-rate>``: ``--sampling-rate`` (``auto``: the training recordings' own,
most common, rate), the number of mel bins that suits the bandwidth the features really have (the lower of that
rate and the lowest rate in the corpus: :func:`mel_bins_for_rate`), and the training recordings' own rate.

Usage::

    python3 egs/TEMPLATE/asr/local/check_manifests.py --manifest-dir data/manifests --prefix mycorpus \\
        --splits train,dev,test --score-splits test --cohort-keys accent,gender --sampling-rate auto
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List

from lhotse import load_manifest_lazy

# why these numbers: docs/your-corpus.md, "Features"
NARROWBAND_MEL_BINS = 23   # Kaldi's and icefall's yesno choice for telephone-band (8 kHz) audio
WIDEBAND_MEL_BINS = 80     # icefall's choice at 16 kHz


def mel_bins_for_rate(rate: int) -> int:
    """Mel bins for audio whose bandwidth is ``rate / 2``: at 8 kHz, 80 bins over 0-4 kHz are each a few FFT bins
    wide and noisy, and audio upsampled from 8 kHz holds only the floor above 4 kHz; on a small 8 kHz corpus 80
    bins gave 24-30% WER where 23 gave 2% (issue 21)."""
    return NARROWBAND_MEL_BINS if rate <= 8000 else WIDEBAND_MEL_BINS


def manifest_path(manifest_dir: Path, prefix: str, kind: str, split: str) -> Path:
    return manifest_dir / f"{prefix}_{kind}_{split}.jsonl.gz"


def check_split(manifest_dir: Path, prefix: str, split: str) -> Dict[str, object]:
    """Rates, speakers and attribute values of one split; raises naming the file and item that is wrong."""
    paths = {kind: manifest_path(manifest_dir, prefix, kind, split) for kind in ("recordings", "supervisions")}
    for kind, path in paths.items():
        if not path.is_file():
            present = sorted(p.name for p in manifest_dir.glob("*.jsonl.gz")) if manifest_dir.is_dir() else []
            raise FileNotFoundError(f"{path}: no {kind} manifest for split {split!r} (expected names "
                                    f"<prefix>_{{recordings,supervisions}}_<split>.jsonl.gz; {manifest_dir} holds "
                                    f"{present or 'nothing'})")
    rates: Counter = Counter()
    recording_ids = set()
    for rec in load_manifest_lazy(paths["recordings"]):
        rates[int(rec.sampling_rate)] += 1
        recording_ids.add(rec.id)
    values: Dict[str, set] = {}
    num_sups = 0
    for sup in load_manifest_lazy(paths["supervisions"]):
        num_sups += 1
        if sup.recording_id not in recording_ids:
            raise ValueError(f"{paths['supervisions']}: supervision {sup.id} names recording {sup.recording_id!r}, "
                             f"which {paths['recordings']} lacks")
        if not (sup.text or "").strip():
            raise ValueError(f"{paths['supervisions']}: supervision {sup.id} has an empty transcript")
        attrs = {name: getattr(sup, name) for name in ("speaker", "gender", "language")}
        attrs.update(sup.custom or {})
        for name, value in attrs.items():
            if value is not None and isinstance(value, (str, int, bool)):
                values.setdefault(name, set()).add(value)
    if num_sups == 0:
        raise ValueError(f"{paths['supervisions']}: no supervisions")
    return {"rates": rates, "num_recordings": len(recording_ids), "num_supervisions": num_sups, "values": values}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest-dir", type=Path, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--splits", required=True, help="comma-separated; the first is the training split")
    parser.add_argument("--score-splits", default="", help="comma-separated splits scored per cohort")
    parser.add_argument("--cohort-keys", default="", help="comma-separated attributes that must be present")
    parser.add_argument("--sampling-rate", default="auto", help="the features' rate (audio is resampled to it); "
                        "auto: the training recordings' own rate")
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    keys = [k for k in args.cohort_keys.split(",") if k]
    infos = {}
    try:
        for split in splits:
            infos[split] = info = check_split(args.manifest_dir, args.prefix, split)
            attrs = ", ".join(f"{k} ({len(v)} values)" for k, v in sorted(info["values"].items())) or "none"
            rates = ", ".join(f"{r} Hz x {n}" for r, n in sorted(info["rates"].items()))
            print(f"{args.prefix} {split}: {info['num_recordings']} recordings ({rates}), "
                  f"{info['num_supervisions']} supervisions; cohort attributes: {attrs}", file=sys.stderr)
        for split in [s for s in args.score_splits.split(",") if s]:
            missing = [k for k in keys if k not in infos[split]["values"]]
            if missing:
                raise ValueError(f"{manifest_path(args.manifest_dir, args.prefix, 'supervisions', split)}: no "
                                 f"supervision carries the cohort key(s) {missing} (present: "
                                 f"{sorted(infos[split]['values'])})")
    except (FileNotFoundError, ValueError) as e:
        print(f"check_manifests.py: {e}", file=sys.stderr)
        return 1
    train_rates = infos[splits[0]]["rates"]
    native = train_rates.most_common(1)[0][0]
    target = native if args.sampling_rate == "auto" else int(args.sampling_rate)
    lowest = min(r for info in infos.values() for r in info["rates"])
    if len({r for info in infos.values() for r in info["rates"]}) > 1:
        print(f"{args.prefix}: mixed sampling rates; the audio above {lowest} / 2 Hz is missing in some "
              f"recordings, so the mel bins suit {lowest} Hz", file=sys.stderr)
    if target > lowest:
        print(f"{args.prefix}: resampling {lowest} Hz audio up to {target} Hz adds no bandwidth: the mel bins above "
              f"{lowest // 2} Hz hold only the floor", file=sys.stderr)
    print(target, mel_bins_for_rate(min(target, lowest)), native)
    return 0


if __name__ == "__main__":
    sys.exit(main())
