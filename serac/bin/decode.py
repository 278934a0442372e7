#!/usr/bin/env python3
"""Decode a cuts manifest with a trained transducer and write icefall-style results.

Usage:
  python -m serac.bin.decode --exp-dir exp/lstm --lang-dir data/lang_word --epoch 10 --avg 3 \
      --cuts data/fbank/yesno_cuts_test.jsonl.gz --set-name test --method greedy_search
  python -m serac.bin.decode ... --method modified_beam_search --beam 4
  # shallow fusion with a token n-gram LM (serac.bin.train_lm):
  python -m serac.bin.decode ... --method modified_beam_search --lm data/lang_bpe_64/lm-6gram.arpa --lm-scale 0.3
  # one shard of N (steps/decode.sh --nj N runs these as a job array, then merges):
  python -m serac.bin.decode ... --num-shards 3 --shard 2

  # the suffix a decode with these options writes (what steps/decode.sh and the recipes ask for):
  python -m serac.bin.decode --print-suffix --method modified_beam_search --epoch 10 --avg 3 --beam 4

Writes to <exp-dir>/decode/<set-name>/ (or --out-dir):
  recogs-<set>-<suffix>.txt, errs-<set>-<suffix>.txt, wer-summary-<set>-<suffix>.txt, stats-<set>-<suffix>.json
where <suffix> is e.g. greedy_search-epoch-10-avg-3 (modified_beam_search adds -beam-4, and with an LM
-lm-<scale>).
With --num-shards > 1 only recogs-<set>-<suffix>.shard-J.txt is written; serac.bin.merge_decode finishes.
An encoder that counts its executed FLOPs (``last_flops``, e.g. amortized_transformer) also gets
compute-<set>-<suffix>.tsv (per utterance: cut_id, frames, flops, dense_flops, flop_fraction; .shard-J.tsv per
shard) and the set's flop_fraction in the stats; the stats always hold encoder_seconds (encoder CPU time).
The work is done by serac.decode.offline (suffixes: serac.decode.naming).
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from serac.decode.cli import add_job_arguments, add_model_arguments
from serac.decode.naming import METHODS, decode_suffix


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--print-suffix", action="store_true",
                   help="print the decode suffix of these options and exit (needs --method/--epoch/--avg/--beam/"
                   "--lm/--lm-scale/--blank-penalty only)")
    add_model_arguments(p)
    p.add_argument("--method", choices=METHODS, default="greedy_search")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lm", help="token n-gram LM in ARPA format for shallow fusion (modified_beam_search only)")
    p.add_argument("--lm-scale", type=float, default=0.3, help="weight of the LM log-probabilities (with --lm)")
    p.add_argument("--blank-penalty", type=float, default=0.0,
                   help="subtracted from the blank logit in modified_beam_search (counters LM deletions)")
    p.add_argument("--max-duration", type=float, default=300.0)
    add_job_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.print_suffix:
        print(decode_suffix(args.method, args.epoch, args.avg, args.beam, args.lm_scale if args.lm else None,
                            args.blank_penalty))
        return
    missing = [o for o in ("exp_dir", "lang_dir", "cuts", "set_name") if getattr(args, o) is None]
    if missing:
        parser.error("the following arguments are required: " + ", ".join("--" + o.replace("_", "-") for o in missing))
    from serac.decode.offline import decode_set
    from serac.utils import setup_logging

    setup_logging()
    try:
        decode_set(args.exp_dir, args.lang_dir, args.cuts, args.set_name, args.epoch, args.avg, args.method,
                   args.beam, args.lm, args.lm_scale, args.blank_penalty, args.max_duration, args.out_dir,
                   args.num_shards, args.shard, args.num_threads, as_conversations=args.conversations)
    except ValueError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
