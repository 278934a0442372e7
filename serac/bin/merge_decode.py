#!/usr/bin/env python3
"""Merge the shards written by ``serac.bin.decode --num-shards N`` (or ``serac.bin.decode_streaming``) into the
same files a single job writes.

Usage:
  python -m serac.bin.merge_decode --out-dir exp/lstm/decode/test --set-name test \
      --suffix greedy_search-epoch-10-avg-3 --num-shards 3
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from serac.bin.decode import write_results
from serac.scoring.wer import load_transcripts
from serac.utils import setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--set-name", required=True)
    p.add_argument("--suffix", required=True)
    p.add_argument("--num-shards", type=int, required=True)
    args = p.parse_args()
    setup_logging()
    out_dir = Path(args.out_dir)
    results, shard_stats = [], []
    for j in range(1, args.num_shards + 1):
        recogs = out_dir / f"recogs-{args.set_name}-{args.suffix}.shard-{j}.txt"
        if not recogs.is_file():
            raise SystemExit(f"shard {j} of {args.num_shards} missing: {recogs}")
        results.extend(load_transcripts(recogs))
        shard_stats.append(json.loads((out_dir / f"stats-{args.set_name}-{args.suffix}.shard-{j}.json").read_text()))
    if "chunk_compute_ms_all" in shard_stats[-1]:
        # streaming shards carry their raw per-chunk times: percentiles cannot be merged from per-shard ones
        from serac.bin.decode_streaming import merge_streaming_stats, write_streaming_results

        write_streaming_results(out_dir, args.set_name, args.suffix, results, merge_streaming_stats(shard_stats))
    else:
        stats = dict(shard_stats[-1])
        audio_s = sum(s["audio_seconds"] for s in shard_stats)
        dec_s = sum(s["decode_seconds"] for s in shard_stats)
        stats.update({"audio_seconds": audio_s, "decode_seconds": dec_s, "rtf": dec_s / max(audio_s, 1e-9),
                      "num_shards": args.num_shards})
        write_results(out_dir, args.set_name, args.suffix, results, stats)
    for j in range(1, args.num_shards + 1):
        (out_dir / f"recogs-{args.set_name}-{args.suffix}.shard-{j}.txt").unlink()
        (out_dir / f"stats-{args.set_name}-{args.suffix}.shard-{j}.json").unlink()
    logging.info(f"merged {args.num_shards} shards, {len(results)} utterances")


if __name__ == "__main__":
    main()
