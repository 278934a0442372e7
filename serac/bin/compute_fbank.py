#!/usr/bin/env python3
"""Build cuts from lhotse recording/supervision manifests and compute fbank features (LilcomChunkyWriter).

Usage:
  python -m serac.bin.compute_fbank --manifest-dir data/manifests --prefix yesno --split train \
      --out-dir data/fbank --num-mel-bins 23 --sampling-rate 8000
  # writes data/fbank/yesno_cuts_train.jsonl.gz and data/fbank/yesno_feats_train.lca; skips if the cuts exist
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet, load_manifest_lazy

from serac.data.features import compute_fbank
from serac.utils import atomic_path, setup_logging


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
    p.add_argument("--force", action="store_true", help="recompute even if the cuts manifest exists")
    return p


def make_cuts(manifest_dir: Path, prefix: str, split: str) -> CutSet:
    rec_path = manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz"
    sup_path = manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz"
    ready = manifest_dir / f"{prefix}_cuts_{split}.jsonl.gz"
    if not rec_path.is_file() and ready.is_file():
        return load_manifest_lazy(ready)  # ready-made cuts, e.g. simulated conversations (mixed while computing)
    for path in (rec_path, sup_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (did the manifest stage run?)")
    cuts = CutSet.from_manifests(recordings=load_manifest_lazy(rec_path), supervisions=load_manifest_lazy(sup_path))
    # one utterance per cut: recordings holding several supervisions (or a partial one) are trimmed to them
    if any(len(c.supervisions) != 1 or c.supervisions[0].start > 0 or c.supervisions[0].duration < c.duration - 1e-3
           for c in cuts):
        cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    return cuts


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    torch.set_num_threads(1)
    out_dir = Path(args.out_dir)
    cuts_path = out_dir / f"{args.prefix}_cuts_{args.split}.jsonl.gz"
    if cuts_path.is_file() and not args.force:
        logging.info(f"{cuts_path} exists; skipping (use --force to recompute)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    cuts = make_cuts(Path(args.manifest_dir), args.prefix, args.split)
    factors = [float(f) for f in args.speed_perturb.split(",") if f]
    cuts = compute_fbank(cuts, out_dir / f"{args.prefix}_feats_{args.split}", num_mel_bins=args.num_mel_bins,
                         sampling_rate=args.sampling_rate, backend=args.backend, num_jobs=args.num_jobs,
                         speed_perturb=factors)
    with atomic_path(cuts_path) as tmp:
        cuts.to_file(tmp)
    logging.info(f"wrote {cuts_path} ({len(cuts)} cuts)")


if __name__ == "__main__":
    main()
