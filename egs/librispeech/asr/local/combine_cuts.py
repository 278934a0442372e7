#!/usr/bin/env python3
"""Combine cut manifests into one: LibriSpeech's three training parts become one training set, its dev parts one
validation set.

With --shuffle the inputs are interleaved at random in proportion to their sizes (lhotse's lazy ``CutSet.mux``,
so 960 h x 3 speed-perturbed copies never sit in memory at once). It matters: the training sampler shuffles within
a bounded buffer, so a plain concatenation would start every epoch with all of train-clean-100 and end it with
all of train-other-500.

Usage:
  python local/combine_cuts.py --shuffle --seed 42 data/fbank/librispeech_cuts_train.jsonl.gz \
      data/fbank/librispeech_cuts_train-clean-100.jsonl.gz data/fbank/librispeech_cuts_train-other-500.jsonl.gz
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import CutSet, load_manifest_lazy

from serac.utils import atomic_path, setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--shuffle", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    setup_logging()
    for path in args.inputs:
        if not Path(path).is_file():
            raise SystemExit(f"{path} not found (did the fbank stage run for this part?)")
    parts = [load_manifest_lazy(path) for path in args.inputs]
    seen, counts = {}, []
    for path, part in zip(args.inputs, parts):
        counts.append(0)
        for cut in part:
            if cut.id in seen:
                raise SystemExit(f"cut {cut.id} is in both {seen[cut.id]} and {path}")
            seen[cut.id] = path
            counts[-1] += 1
    if args.shuffle and len(parts) > 1:
        combined = CutSet.mux(*parts, weights=counts, seed=args.seed)
    else:
        combined = CutSet.from_cuts(c for part in parts for c in part)
    with atomic_path(args.out) as tmp:
        combined.to_file(tmp)
    logging.info(f"wrote {args.out}: {sum(counts)} cuts from {len(args.inputs)} manifests")


if __name__ == "__main__":
    main()
