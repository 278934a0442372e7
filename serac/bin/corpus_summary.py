#!/usr/bin/env python3
"""Validate a corpus's lhotse manifests and summarise it (duration, speakers, utterances per split and per
attribute), as a markdown file. Durations are in hours, or minutes / seconds for small amounts.

Usage:
  python -m serac.bin.corpus_summary --manifest-dir data/manifests --prefix synth --splits train,dev,test,adapt \
      --keys accent,region,condition --out data/manifests/summary.md
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from serac.data.validate import DataError, format_duration, iter_manifest, manifest_paths, validate_split
from serac.utils import atomic_write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--splits", default="train,dev,test")
    p.add_argument("--keys", default="accent,region,condition", help="supervision attributes to count per split")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    mdir = Path(args.manifest_dir)
    keys = [k for k in args.keys.split(",") if k]
    rows, per_key = [], {k: defaultdict(dict) for k in keys}
    splits = [s for s in args.splits.split(",") if s]
    for split in splits:
        _, sup_path = manifest_paths(mdir, args.prefix, split)
        try:
            # the manifest checks of the feature stage's validation (the audio is checked there)
            validate_split(mdir, args.prefix, split, check_audio=False)
        except DataError as e:
            raise SystemExit(f"corpus_summary: {e}") from e
        speakers, n, seconds, words = set(), 0, 0.0, 0
        for s in iter_manifest(sup_path):  # streaming: a 100 h corpus is never held in memory
            speakers.add(s.get("speaker"))
            n, seconds, words = n + 1, seconds + s["duration"], words + len((s.get("text") or "").split())
            for k in keys:
                v = str((s.get("custom") or {}).get(k, s.get(k)))
                per_key[k][v][split] = per_key[k][v].get(split, 0) + s["duration"]
        rows.append((split, n, len(speakers), seconds, words))
    lines = [f"### Corpus `{args.prefix}` (from `{mdir}`)", "",
             "| split | utterances | speakers | duration | words |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {n} | {spk} | {format_duration(sec)} | {w} |" for s, n, spk, sec, w in rows]
    for k in keys:
        lines += ["", f"Duration by `{k}`:", "", "| " + k + " | " + " | ".join(splits) + " |",
                  "|---" * (len(splits) + 1) + "|"]
        for v in sorted(per_key[k]):
            lines.append(f"| {v} | " + " | ".join(format_duration(per_key[k][v].get(s, 0)) for s in splits) + " |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
