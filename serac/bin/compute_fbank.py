#!/usr/bin/env python3
"""Make the cuts of a split from its lhotse recording/supervision manifests and compute fbank features.

Usage:
  python -m serac.bin.compute_fbank --manifest-dir data/manifests --prefix yesno --split train \
      --out-dir data/fbank --num-mel-bins 23 --sampling-rate 8000 \
      --validation-report data/fbank/validate/yesno_train.json
  # writes data/fbank/yesno_feats_train.lca, then data/fbank/yesno_cuts_train.jsonl.gz (both atomically), then
  # data/fbank/.done/yesno_train (line 1: the options used, line 2: a summary); skips when all three exist with
  # the same options

A split with no recordings manifest but a ready ``<prefix>_cuts_<split>.jsonl.gz`` in the manifest directory (e.g.
simulated conversations, lhotse MixedCuts) is computed from those cuts as they are.
The validation report (steps/validate_data.sh) names the recordings and supervisions to leave out; every cut is
one supervision and has its id (serac.data.features).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from lhotse import load_manifest_lazy

from serac.data.features import load_split_cuts, write_fbank
from serac.data.validate import DataError, ValidationReport
from serac.utils import atomic_write_text, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", required=True)
    p.add_argument("--prefix", required=True, help="manifest prefix, e.g. yesno -> yesno_recordings_<split>.jsonl.gz")
    p.add_argument("--split", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--num-mel-bins", type=int, default=80)
    p.add_argument("--sampling-rate", type=int, default=16000)
    p.add_argument("--backend", default="auto", choices=["auto", "kaldifeat", "lhotse"])
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("--speed-perturb", default="", help="comma-separated factors, e.g. 0.9,1.1 (train only)")
    p.add_argument("--validation-report", default="",
                   help="JSON from steps/validate_data.sh: the items to leave out (none when not given)")
    p.add_argument("--force", action="store_true", help="recompute even if the outputs are complete")
    return p


def output_paths(out_dir: Path, prefix: str, split: str) -> dict:
    """Every output of a split; the done marker is written last, so its presence means all are complete."""
    return {"cuts": out_dir / f"{prefix}_cuts_{split}.jsonl.gz", "feats": out_dir / f"{prefix}_feats_{split}.lca",
            "done": out_dir / ".done" / f"{prefix}_{split}"}


def options_of(args: argparse.Namespace) -> str:
    """The done marker's first line; steps/make_fbank.sh writes the same string to compare it in shell."""
    return (f"num_mel_bins={args.num_mel_bins} sampling_rate={args.sampling_rate} backend={args.backend} "
            f"speed_perturb={args.speed_perturb}")


def is_done(paths: dict, options: str) -> bool:
    """True when every output exists and the done marker records the same options; an error when the outputs
    were made with other options (silently reusing them would train on other features)."""
    if not all(p.is_file() for p in paths.values()):
        return False
    made_with = paths["done"].read_text().split("\n", 1)[0]
    if made_with != options:
        raise DataError(f"{paths['cuts']} was made with {made_with}, not {options}: remove "
                        f"{paths['done']} to recompute, or use another output directory")
    return True


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    torch.set_num_threads(1)
    out_dir = Path(args.out_dir)
    paths = output_paths(out_dir, args.prefix, args.split)
    options = options_of(args)
    try:
        if not args.force and is_done(paths, options):
            logging.info(f"{paths['cuts']} and {paths['feats']} are complete; skipping (use --force to recompute)")
            return
        paths["done"].unlink(missing_ok=True)  # from here on the outputs are not complete
        report = ValidationReport.load(args.validation_report) if args.validation_report else None
        ready = Path(args.manifest_dir) / f"{args.prefix}_cuts_{args.split}.jsonl.gz"
        recordings = Path(args.manifest_dir) / f"{args.prefix}_recordings_{args.split}.jsonl.gz"
        if not recordings.is_file() and ready.is_file():
            # ready-made cuts without a recordings manifest, e.g. simulated conversations (mixed while computing)
            cuts = load_manifest_lazy(ready)
        else:
            cuts = load_split_cuts(args.manifest_dir, args.prefix, args.split, report)
        factors = [float(f) for f in args.speed_perturb.split(",") if f]
        summary = write_fbank(cuts, paths["feats"], paths["cuts"], num_mel_bins=args.num_mel_bins,
                              sampling_rate=args.sampling_rate, backend=args.backend, num_jobs=args.num_jobs,
                              speed_perturb=factors, expected_cuts=report.supervisions if report else None)
    except DataError as e:
        raise SystemExit(f"compute_fbank: {e}")
    atomic_write_text(paths["done"], options + "\n" + summary.line() + "\n" + json.dumps(
        {"cuts": summary.cuts, "seconds": round(summary.seconds, 3), "downmixed": summary.downmixed,
         "source_rates": summary.source_rates}, sort_keys=True) + "\n")
    logging.info(f"wrote {paths['cuts']} ({summary.line()})")


if __name__ == "__main__":
    main()
