#!/usr/bin/env python3
"""Label cuts with their cohort for a model with a cohort embedding (``model.cohort_embedding``): each cut's first
supervision gets ``custom[<key>]`` = its speaker's cohort, from a discovery's cohort map (or, without a map, the
attribute the cuts already carry, e.g. ``region``). Also writes the cohort names in id order and the fine-tuning
config that adds the embedding to the baseline's.

Usage:
  local/label_cuts.py --key auto_cohort --cohort-map exp/discovery/auto/cohort-map.tsv \
      --cuts data/sets/continue.jsonl.gz:data/sets/continue_labelled.jsonl.gz \
      --cuts data/fbank/synth_cuts_test.jsonl.gz:data/sets/test_labelled.jsonl.gz \
      --base-config exp/ewc/finetune.yaml --dim 16 --config-out data/sets/cohortemb.yaml
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from lhotse import CutSet

from serac.fairness.cohorts import load_cohort_map
from serac.utils import atomic_write_text


def label(cuts: CutSet, key: str, by_speaker: Optional[Dict[str, str]], where: str) -> CutSet:
    """A copy of ``cuts`` whose first supervision carries ``custom[key]``; ValueError naming an unlabelled cut."""
    out = []
    for cut in cuts:
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is None:
            raise ValueError(f"{where}: cut {cut.id} has no supervision")
        custom = dict(sup.custom or {})
        if by_speaker is not None:
            if sup.speaker not in by_speaker:
                raise ValueError(f"{where}: cut {cut.id}: speaker {sup.speaker} is not in the cohort map (discover "
                                 f"with --label-cuts for its split)")
            custom[key] = by_speaker[sup.speaker]
        elif key not in custom:
            raise ValueError(f"{where}: cut {cut.id} has no '{key}' attribute and no cohort map was given")
        out.append(cut.map_supervisions(lambda s, c=custom: replace(s, custom=c)))
    return CutSet.from_cuts(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key", required=True)
    p.add_argument("--cohort-map", help="speaker-keyed TSV of a discovery; none: the cuts' own attribute")
    p.add_argument("--cuts", action="append", required=True, metavar="IN:OUT")
    p.add_argument("--base-config", required=True, help="the fine-tuning config the embedding is added to")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--config-out", required=True)
    args = p.parse_args()
    by_speaker = None
    names: List[str] = []
    if args.cohort_map:
        cmap = load_cohort_map(args.cohort_map)
        if cmap.by != "speaker" or args.key not in cmap.columns:
            raise SystemExit(f"{args.cohort_map}: not a speaker map of '{args.key}'")
        by_speaker = {spk: v[args.key] for spk, v in cmap.values.items()}
        names = sorted(set(by_speaker.values()))
    for spec in args.cuts:
        src, sep, dst = spec.partition(":")
        if not sep:
            p.error(f"--cuts {spec}: expected IN:OUT")
        labelled = label(CutSet.from_file(src), args.key, by_speaker, src)
        if by_speaker is None:
            names = sorted(set(names) | {c.supervisions[0].custom[args.key] for c in labelled})
        tmp = Path(dst).with_name(Path(dst).name + ".tmp.jsonl.gz")
        labelled.to_file(tmp)
        os.replace(tmp, dst)
    base = os.path.relpath(Path(args.base_config).resolve(), Path(args.config_out).resolve().parent)
    cfg = {"base": base, "model": {"cohort_embedding": {"key": args.key, "cohorts": names, "dim": args.dim}}}
    atomic_write_text(args.config_out, "# written by local/label_cuts.py: the fine-tuning config plus a cohort "
                                        "embedding of the discovered cohorts\n" + yaml.safe_dump(cfg, sort_keys=False))


if __name__ == "__main__":
    main()
