#!/usr/bin/env python3
"""Pick the decoding setting with the lowest WER among a set's wer-summary files (e.g. an LM-weight grid on dev).

  python -m serac.bin.pick_decode --decode-dir exp/lstm/decode/dev --set-name dev \
      --pattern 'modified_beam_search-epoch-15-avg-5-beam-8-lm-*' --out exp/lstm/decode/lm-tuning.tsv

Prints the best suffix; --out gets the whole grid (suffix, WER, sorted best first). Ties go to the suffix that
sorts first, so the choice is deterministic. --with-options adds, after the suffix, the steps/decode.sh options
that repeat the best setting (``--lm-scale S --blank-penalty P``), read from the decode's stats JSON (what the
decode recorded, not parsed back out of the suffix).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from serac.decode.results import read_summary_wer
from serac.utils import atomic_write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decode-dir", required=True)
    p.add_argument("--set-name", required=True)
    p.add_argument("--pattern", required=True, help="glob over the decode suffix")
    p.add_argument("--out", help="TSV of the grid")
    p.add_argument("--with-options", action="store_true",
                   help="print the best setting's --lm-scale/--blank-penalty after its suffix")
    args = p.parse_args()
    d = Path(args.decode_dir)
    prefix = f"wer-summary-{args.set_name}-"
    rows = sorted((read_summary_wer(f), f.name[len(prefix): -len(".txt")])
                  for f in d.glob(f"{prefix}{args.pattern}.txt"))
    if not rows:
        raise SystemExit(f"{d}: no {prefix}{args.pattern}.txt")
    if args.out:
        atomic_write_text(args.out, "suffix\tWER\n" + "".join(f"{s}\t{w:.2f}\n" for w, s in rows))
    best = rows[0][1]
    if not args.with_options:
        print(best)
        return
    stats_file = d / f"stats-{args.set_name}-{best}.json"
    try:
        stats = json.loads(stats_file.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{stats_file}: cannot read the decode's settings ({e})") from None
    opts = [f"--lm-scale {stats['lm_scale']:g}"] if "lm_scale" in stats else []
    opts.append(f"--blank-penalty {stats.get('blank_penalty', 0.0):g}")
    print(best, *opts)


if __name__ == "__main__":
    main()
