#!/usr/bin/env python3
"""Multi-talker scores of one STS / MT-RNN-T decode: cpWER and ORC-WER (meeteval) with speaker-bootstrap 95%
intervals, turn-counting accuracy, start- / end-of-turn emission latency (median, p90, ms), overall and per
overlap-ratio bin.

Usage::

    python -m serac.bin.score_multitalker \\
        --hyps exp/sts/decode/test/hyps-test-greedy_search-epoch-10-avg-3.jsonl \\
        --cuts data/fbank/conv_cuts_test.jsonl.gz --lang-dir data/lang_bpe_128_turns
    # a model trained without turn tokens (MT-RNN-T): turns by silence between emissions
    python -m serac.bin.score_multitalker --hyps ... --cuts ... --lang-dir ... --gap-s 0.5
    # LibriCSS windows: a row per recording condition (the cuts' custom field) instead of per overlap-ratio bin
    python -m serac.bin.score_multitalker --hyps ... --cuts data/fbank/libricss_cuts_test.jsonl.gz \
        --lang-dir ... --group-by condition

Writes ``multitalker-<set>-<suffix>.{json,tsv,md}`` next to the hyps file (or in --out-dir), ``<set>-<suffix>``
taken from the hyps file's name. The work and every definition: serac/multitalker/scoring.py.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hyps", type=Path, required=True, help="hyps-<set>-<suffix>.jsonl of a multi-talker decode")
    p.add_argument("--cuts", type=Path, required=True, help="the conversation cuts the decode was run on")
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, help="default: the hyps file's directory")
    p.add_argument("--bins", default="0,0.1,0.2,0.3,0.4", help="overlap-ratio bins (nearest bin wins)")
    p.add_argument("--group-by", help="rows by this custom field of the cuts instead of overlap-ratio bins "
                   "(LibriCSS windows: condition)")
    p.add_argument("--gap-s", type=float, help="segment turns by silences longer than this (no turn tokens)")
    p.add_argument("--max-offset-s", type=float, default=2.0, help="latency matching gate")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    from serac.data.dataset import load_cuts
    from serac.data.tokenizer import Tokenizer
    from serac.multitalker.decode import read_hyps
    from serac.multitalker.scoring import ScoreOptions, score_decode, table_rows, write_score
    from serac.utils import setup_logging

    setup_logging()
    name = args.hyps.name
    if not (name.startswith("hyps-") and name.endswith(".jsonl")):
        raise SystemExit(f"{args.hyps}: expected a hyps-<set>-<suffix>.jsonl file")
    options = ScoreOptions(bins=[float(b) for b in args.bins.split(",")], gap_s=args.gap_s,
                           max_offset_s=args.max_offset_s, n_bootstrap=args.n_bootstrap, seed=args.seed,
                           group_by=args.group_by,
                           extra={"hyps": str(args.hyps), "cuts": str(args.cuts)})
    try:
        result = score_decode(load_cuts(args.cuts), read_hyps(args.hyps), Tokenizer(args.lang_dir), options)
    except ValueError as e:
        raise SystemExit(f"{args.hyps}: {e}") from None
    paths = write_score(args.out_dir or args.hyps.parent, name[len("hyps-"):-len(".jsonl")], result)
    row = table_rows(result)[0]
    logging.info(f"{name}: cpWER {row[2]}% {row[3]}, ORC-WER {row[4]}% {row[5]}, turn counting {row[6]}% {row[7]}, "
                 f"eot latency median {row[10]} ms p90 {row[11]} ms; wrote {paths['md']}")


if __name__ == "__main__":
    main()
