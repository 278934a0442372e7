#!/usr/bin/env python3
"""Validate a corpus's lhotse manifests and summarise it (hours, speakers, utterances per split and per
attribute), as a markdown file.

Usage:
  python -m serac.bin.corpus_summary --manifest-dir data/manifests --prefix synth --splits train,dev,test,adapt \
      --keys accent,region,condition --out data/manifests/summary.md
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from lhotse import load_manifest
from lhotse.qa import validate_recordings_and_supervisions

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
        rec_path = mdir / f"{args.prefix}_recordings_{split}.jsonl.gz"
        sup_path = mdir / f"{args.prefix}_supervisions_{split}.jsonl.gz"
        for path in (rec_path, sup_path):
            if not path.is_file():
                raise SystemExit(f"{path} not found: did the generation / manifest stage finish?")
        recs, sups = load_manifest(rec_path), load_manifest(sup_path)
        try:
            validate_recordings_and_supervisions(recs, sups)
        except AssertionError as e:
            raise SystemExit(f"{sup_path}: manifests do not validate: {e}") from e
        speakers = {s.speaker for s in sups}
        words = sum(len((s.text or "").split()) for s in sups)
        rows.append((split, len(sups), len(speakers), sum(s.duration for s in sups) / 3600, words))
        for k in keys:
            for s in sups:
                v = (s.custom or {}).get(k, getattr(s, k, None))
                per_key[k][str(v)][split] = per_key[k][str(v)].get(split, 0) + s.duration / 3600
    lines = [f"### Corpus `{args.prefix}` (from `{mdir}`)", "",
             "| split | utterances | speakers | hours | words |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {n} | {spk} | {h:.2f} | {w} |" for s, n, spk, h, w in rows]
    for k in keys:
        lines += ["", f"Hours by `{k}`:", "", "| " + k + " | " + " | ".join(splits) + " |",
                  "|---" * (len(splits) + 1) + "|"]
        for v in sorted(per_key[k]):
            lines.append(f"| {v} | " + " | ".join(f"{per_key[k][v].get(s, 0):.2f}" for s in splits) + " |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
