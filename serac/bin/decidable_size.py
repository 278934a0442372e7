#!/usr/bin/env python3
"""How many test speakers a relative WER difference needs to be decided: the paired speaker-bootstrap interval of
system A against system B (two decodes of the same test set) at the set's own size, at larger sizes, and the size
at which its half-width falls to --target points (serac/scoring/power.py says how).

Usage:
  python -m serac.bin.decidable_size --a exp/x/decode/test/recogs-test-S.txt --b exp/y/decode/test/recogs-test-S.txt \
      --cuts data/fbank/synth_cuts_test.jsonl.gz --target 3
  # prints a table (speakers, utterances at the set's utterances per speaker, interval, half-width) and the size
  # needed; --json FILE also writes it
"""
from __future__ import annotations

import argparse
import json
import logging

from serac.scoring.per_speaker import cut_speakers
from serac.scoring.power import (half_width, paired_speaker_errors, relative_difference_interval,
                                 speakers_for_half_width)
from serac.scoring.wer import load_transcripts
from serac.utils import atomic_write_text, setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="recogs file of system A")
    p.add_argument("--b", required=True, help="recogs file of system B (the reference of the relative difference)")
    p.add_argument("--cuts", required=True, help="the decoded cuts (speakers)")
    p.add_argument("--target", type=float, default=3.0, help="interval half-width to reach, percentage points")
    p.add_argument("--sizes", default="1,2,4,8", help="multiples of the set's speakers to tabulate")
    p.add_argument("--n-bootstrap", type=int, default=2000)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    setup_logging()
    a, b = load_transcripts(args.a), load_transcripts(args.b)
    try:
        ea, eb, words, names = paired_speaker_errors(a, b, cut_speakers(args.cuts))
    except (KeyError, ValueError) as e:
        raise SystemExit(f"{args.a} vs {args.b} ({args.cuts}): {e.args[0]}")
    n0, utts_per_speaker = len(names), len(a) / len(names)
    rows = []
    for m in [float(x) for x in args.sizes.split(",")]:
        n = max(1, round(m * n0))
        interval = relative_difference_interval(ea, eb, n, args.n_bootstrap)
        rows.append({"speakers": n, "utterances": round(n * utts_per_speaker), "low": interval[0],
                     "high": interval[1], "half_width": half_width(interval)})
    need = speakers_for_half_width(ea, eb, args.target, args.n_bootstrap)
    point = 100.0 * (ea.sum() / eb.sum() - 1.0)
    print(f"A vs B: {point:+.1f}% relative WER ({ea.sum():.0f} vs {eb.sum():.0f} errors, {words.sum():.0f} words, "
          f"{n0} speakers, {utts_per_speaker:.1f} utterances each)")
    print("| speakers | utterances | 95% interval of the relative difference | half-width |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['speakers']} | {r['utterances']} | [{r['low']:+.1f}, {r['high']:+.1f}] | {r['half_width']:.1f} |")
    print(f"half-width <= {args.target:g} points needs about {need['speakers']:.0f} speakers "
          f"({need['speakers'] * utts_per_speaker:.0f} utterances; half-width there {need['half_width']:.2f}; "
          f"1/sqrt(n) guess {need['guess']:.0f})")
    if args.json:
        atomic_write_text(args.json, json.dumps({"a": args.a, "b": args.b, "relative_difference": point,
                                                 "speakers": n0, "rows": rows, "needed": need}, indent=1) + "\n")
        logging.info(f"wrote {args.json}")


if __name__ == "__main__":
    main()
