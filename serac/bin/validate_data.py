#!/usr/bin/env python3
"""Check the manifests and audio of corpus splits before their features are computed (serac.data.validate).

Usage:
  python -m serac.bin.validate_data --manifest-dir data/manifests --prefix yesno --splits train,test \
      --out-dir data/fbank/validate --sampling-rate 8000 --num-mel-bins 23
  # prints a summary per split (kept, skipped and why, duplicates, warnings, what the feature stage will do
  # with the source sampling rates), writes <out-dir>/<prefix>_<split>.json for the feature stage, and exits 1
  # naming the file when a split cannot be used

Exit status 1 on a corrupt manifest, conflicting duplicate ids, supervisions of unknown recordings, or more
than --max-skipped-fraction of a split skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serac.data.validate import DataError, feature_plan_lines, validate_split


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--splits", required=True, help="comma-separated, e.g. train,dev,test")
    p.add_argument("--out-dir", required=True, help="where <prefix>_<split>.json reports go")
    p.add_argument("--max-skipped-fraction", type=float, default=0.05,
                   help="more skipped recordings or supervisions than this share of a split is an error")
    p.add_argument("--sampling-rate", type=int, default=0, help="the feature stage's rate (reports resampling)")
    p.add_argument("--num-mel-bins", type=int, default=0, help="the feature stage's bins (reports empty bins)")
    return p


def main() -> None:
    args = get_parser().parse_args()
    out_dir = Path(args.out_dir)
    for split in [s for s in args.splits.split(",") if s]:
        try:
            report = validate_split(args.manifest_dir, args.prefix, split, args.max_skipped_fraction)
        except DataError as e:
            print(f"validate_data: ERROR: {e}", file=sys.stderr)
            sys.exit(1)
        lines = report.summary_lines()
        if args.sampling_rate and args.num_mel_bins:
            lines += feature_plan_lines(report, args.sampling_rate, args.num_mel_bins)
        print("\n".join(lines), flush=True)
        report.save(out_dir / f"{args.prefix}_{split}.json")


if __name__ == "__main__":
    main()
