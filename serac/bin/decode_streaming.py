#!/usr/bin/env python3
"""Streaming decode: feed each utterance's features chunk by chunk through the encoder's ``streaming_forward``
(state carried between chunks) and extend greedy hypotheses after every chunk, as a live recogniser would.
Reports WER (the same recogs/errs/wer-summary files as ``serac.bin.decode``, so ``steps/score_cohorts.sh``
works on them), the real-time factor, the compute time per chunk and the algorithmic latency.

Usage:
  python -m serac.bin.decode_streaming --exp-dir exp/lstm --lang-dir data/lang_bpe_256 --epoch 30 --avg 5 \
      --cuts data/fbank/synth_cuts_test.jsonl.gz --set-name test --chunk-ms 160
  python -m serac.bin.decode_streaming ... --chunk-frames 32          # the chunk in feature frames instead
  # one shard of N (steps/decode_streaming.sh --nj N runs these as a job array, then merges):
  python -m serac.bin.decode_streaming ... --num-shards 3 --shard 2
  # the suffix a decode with these options writes (what steps/decode_streaming.sh and the recipes ask for):
  python -m serac.bin.decode_streaming --print-suffix --chunk-ms 160 --epoch 30 --avg 5

Writes to <exp-dir>/decode/<set-name>/ (or --out-dir), with <suffix> = streaming_greedy_search-chunk-160ms-epoch-30-avg-5:
  recogs-<set>-<suffix>.txt, errs-<set>-<suffix>.txt, wer-summary-<set>-<suffix>.txt, stats-<set>-<suffix>.json
  streaming-summary-<set>-<suffix>.txt   WER, RTF, chunk / look-ahead / algorithmic latency, compute ms per chunk

Chunk compute time, RTF and algorithmic latency are defined in serac.decode.streaming, which does the work.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from serac.decode.cli import add_job_arguments, add_model_arguments
from serac.decode.naming import streaming_suffix


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--print-suffix", action="store_true",
                   help="print the decode suffix for --chunk-ms/--epoch/--avg and exit")
    add_model_arguments(p)
    chunk = p.add_mutually_exclusive_group()
    chunk.add_argument("--chunk-ms", type=float, help="chunk duration in ms (default 160)")
    chunk.add_argument("--chunk-frames", type=int, help="chunk length in feature frames")
    add_job_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.print_suffix:
        if args.chunk_frames is not None:
            parser.error("--print-suffix names the chunk in ms: give --chunk-ms")
        print(streaming_suffix(160.0 if args.chunk_ms is None else args.chunk_ms, args.epoch, args.avg))
        return
    missing = [o for o in ("exp_dir", "lang_dir", "cuts", "set_name") if getattr(args, o) is None]
    if missing:
        parser.error("the following arguments are required: " + ", ".join("--" + o.replace("_", "-") for o in missing))
    from serac.decode.streaming import decode_set_streaming
    from serac.utils import setup_logging

    setup_logging()
    try:
        decode_set_streaming(args.exp_dir, args.lang_dir, args.cuts, args.set_name, args.epoch, args.avg,
                             args.chunk_ms, args.chunk_frames, args.out_dir, args.num_shards, args.shard,
                             args.num_threads, as_conversations=args.conversations)
    except ValueError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
