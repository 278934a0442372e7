#!/usr/bin/env python3
"""Make the baseline recipe's cuts usable from this directory: copies of its manifests whose feature and audio
paths are absolute (the asr recipe stores them relative to its own directory). Nothing is copied but the
manifests; features and audio stay where they are, read only.

Usage: local/prepare_data.py --asr-dir ../asr --splits train,dev,test,adapt --out-dir data/asr
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import CutSet, load_manifest_lazy

from serac.utils import atomic_path


def absolutize(cuts, root: Path):
    for cut in cuts:
        if cut.has_features and not Path(cut.features.storage_path).is_absolute():
            cut = cut.with_features_path_prefix(str(root))
        if cut.has_recording:
            sources = cut.recording.sources
            if any(s.type == "file" and not Path(s.source).is_absolute() for s in sources):
                cut = cut.with_recording_path_prefix(str(root))
        yield cut


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr-dir", required=True)
    p.add_argument("--splits", default="train,dev,test,adapt")
    p.add_argument("--prefix", default="synth")
    p.add_argument("--out-dir", default="data/asr")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = Path(args.asr_dir).resolve()
    for split in args.splits.split(","):
        src = root / "data" / "fbank" / f"{args.prefix}_cuts_{split}.jsonl.gz"
        dst = Path(args.out_dir) / src.name
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            logging.info(f"{dst} is up to date")
            continue
        with atomic_path(dst) as tmp:
            CutSet.from_cuts(absolutize(load_manifest_lazy(src), root)).to_file(tmp)
        logging.info(f"{src} -> {dst}")


if __name__ == "__main__":
    main()
