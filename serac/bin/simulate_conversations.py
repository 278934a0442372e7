#!/usr/bin/env python3
"""Simulate multi-party conversations (lhotse MixedCuts, one supervision per turn) from single-speaker manifests.

Each split's conversations draw on that split's speakers only; the splits' speakers must be disjoint (checked).
Conversation i of a split depends only on (--seed, i, the split's source cuts), so any --nj gives the same set.

Usage:
  # all at once
  python -m serac.bin.simulate_conversations --manifest-dir data/manifests --prefix synth \
      --splits train:2000,dev:200,test:1000 --out-dir data/manifests --out-prefix conv --seed 1
  # as $cmd JOB=1:4 jobs, then a merge
  python -m serac.bin.simulate_conversations ... --nj 4 --job JOB
  python -m serac.bin.simulate_conversations ... --nj 4 --merge
  # conversation splits drawn from other source splits (LibriSpeech's parts; egs/libricss/sts)
  python -m serac.bin.simulate_conversations --manifest-dir data/manifests --prefix librispeech \
      --splits train:60000,dev:500 --sources train:train-clean-100+train-clean-360+train-other-500,dev:dev-clean \
      --out-dir data/manifests --out-prefix conv --seed 1

Writes <out-dir>/<out-prefix>_cuts_<split>.jsonl.gz (the conversations reference the source audio; nothing is
mixed on disk: feature extraction mixes on the fly). Re-runnable: existing outputs are skipped.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Tuple

from lhotse import CutSet, load_manifest, load_manifest_lazy

from serac.multitalker.simulate import ConversationConfig, check_disjoint_speakers, simulate_conversations
from serac.utils import atomic_path, setup_logging


def _pair(text: str, kind, what: str) -> Tuple:
    parts = [kind(p) for p in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{what}: expected 'min,max', got {text!r}")
    return tuple(parts)


def parse_splits(text: str) -> Dict[str, int]:
    splits: Dict[str, int] = {}
    for item in text.split(","):
        name, _, num = item.partition(":")
        if not name or not num.isdigit():
            raise argparse.ArgumentTypeError(f"--splits: expected 'split:num,...', got {text!r}")
        splits[name] = int(num)
    return splits


def parse_sources(text: str, splits: Dict[str, int]) -> Dict[str, List[str]]:
    """--sources 'split:part+part,...' -> {split: [part, ...]}; a split not named reads the source split of its
    own name."""
    sources = {split: [split] for split in splits}
    for item in filter(None, text.split(",")):
        name, _, parts = item.partition(":")
        if name not in splits or not parts:
            raise SystemExit(f"--sources: expected 'split:part+part,...' naming splits of --splits "
                             f"({','.join(splits)}), got {item!r}")
        sources[name] = parts.split("+")
    return sources


def add_conversation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speakers", default="2,2", type=lambda s: _pair(s, int, "--speakers"),
                   help="min,max speakers per conversation")
    p.add_argument("--turns", default="3,6", type=lambda s: _pair(s, int, "--turns"), help="min,max turns")
    p.add_argument("--overlap-ratios", default="0,0.1,0.2,0.3,0.4",
                   type=lambda s: [float(x) for x in s.split(",")],
                   help="target overlap ratios (overlapped over speaking time), one drawn per conversation")
    p.add_argument("--pause", default="0.1,1.0", type=lambda s: _pair(s, float, "--pause"),
                   help="min,max pause (s) between non-overlapping turns")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", required=True, help="holds <prefix>_{recordings,supervisions}_<split>.jsonl.gz")
    p.add_argument("--prefix", default="synth")
    p.add_argument("--splits", required=True, type=parse_splits, help="split:num_conversations,...")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--out-prefix", default="conv")
    p.add_argument("--sources", default="",
                   help="split:part+part,... the source splits each conversation split draws on (default: the "
                        "split of the same name), e.g. train:train-clean-100+train-clean-360,dev:dev-clean")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nj", type=int, default=1)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--job", type=int, help="write only shard JOB of --nj (then run --merge)")
    mode.add_argument("--merge", action="store_true", help="merge the --nj shards into the final manifests")
    add_conversation_arguments(p)
    args = p.parse_args()
    setup_logging()
    config = ConversationConfig(speakers=args.speakers, turns=args.turns, overlap_ratios=args.overlap_ratios,
                                pause_range_s=args.pause)
    manifest_dir, out_dir = Path(args.manifest_dir), Path(args.out_dir)

    def out_path(split: str, job: int | None = None) -> Path:
        shard = f".{job}" if job is not None else ""
        return out_dir / f"{args.out_prefix}_cuts_{split}{shard}.jsonl.gz"

    if args.merge:
        for split in args.splits:
            if out_path(split).is_file():
                continue
            shards = [out_path(split, j) for j in range(1, args.nj + 1)]
            missing = [str(s) for s in shards if not s.is_file()]
            if missing:
                raise FileNotFoundError(f"cannot merge {split}: missing shards {missing}")
            cuts: List = [c for s in shards for c in load_manifest_lazy(s)]
            with atomic_path(out_path(split)) as tmp:
                CutSet.from_cuts(sorted(cuts, key=lambda c: c.id)).to_file(tmp)
            for s in shards:
                s.unlink()
            logging.info(f"wrote {out_path(split)} ({len(cuts)} conversations)")
        return

    sources: Dict[str, CutSet] = {}
    for split, parts in parse_sources(args.sources, args.splits).items():
        cuts: List = []
        for part in parts:
            rec = manifest_dir / f"{args.prefix}_recordings_{part}.jsonl.gz"
            sup = manifest_dir / f"{args.prefix}_supervisions_{part}.jsonl.gz"
            for f in (rec, sup):
                if not f.is_file():
                    raise FileNotFoundError(f"{f} not found (the source of conversation split {split})")
            cuts.extend(CutSet.from_manifests(recordings=load_manifest(rec), supervisions=load_manifest(sup)))
        sources[split] = CutSet.from_cuts(cuts)
    check_disjoint_speakers({split: {s.speaker for c in cuts for s in c.supervisions}
                             for split, cuts in sources.items()})
    jobs = [args.job] if args.job is not None else list(range(1, args.nj + 1))
    for split, num in args.splits.items():
        if out_path(split).is_file():
            logging.info(f"{out_path(split)} exists; skipping")
            continue
        parts = []
        for job in jobs:
            convs = simulate_conversations(sources[split], num, args.seed, config,
                                           id_prefix=f"{args.out_prefix}-{split}-", job=job, nj=args.nj)
            if args.job is not None:
                with atomic_path(out_path(split, job)) as tmp:
                    convs.to_file(tmp)
            parts.extend(convs)
        if args.job is None:
            with atomic_path(out_path(split)) as tmp:
                CutSet.from_cuts(sorted(parts, key=lambda c: c.id)).to_file(tmp)
            logging.info(f"wrote {out_path(split)} ({len(parts)} conversations)")


if __name__ == "__main__":
    main()
