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
from typing import List, Optional

import yaml
from lhotse import CutSet

from serac.fairness.cohorts import CohortMap, apply_cohort_maps, attributes_of_cuts, load_cohort_map
from serac.utils import atomic_path, atomic_write_text


def label(cuts_path: str, key: str, cohort_map: Optional[CohortMap]) -> CutSet:
    """The cuts of ``cuts_path``, each first supervision carrying ``custom[key]``: the cut's cohort from the map
    (serac.fairness.cohorts, as every cohort table reads it) or, without a map, its own attribute; ValueError
    naming a cut that gets none."""
    if not Path(cuts_path).is_file():
        raise FileNotFoundError(f"cuts manifest not found: {cuts_path}")
    cuts = list(CutSet.from_file(cuts_path))  # read once: the attributes and the cuts written back
    attrs = attributes_of_cuts(cuts, cuts_path)
    if cohort_map is not None:
        attrs = apply_cohort_maps(attrs, [cohort_map])
    out = []
    for cut in cuts:
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is None:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no supervision")
        value = attrs[cut.id].get(key)
        if value is None:
            raise ValueError(f"{cuts_path}: cut {cut.id}: " + (
                f"speaker {sup.speaker} is not in the cohort map (discover with --label-cuts for its split)"
                if cohort_map is not None else f"no '{key}' attribute and no cohort map was given"))
        out.append(cut.map_supervisions(lambda s, c={**(sup.custom or {}), key: str(value)}: replace(s, custom=c)))
    return CutSet.from_cuts(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key", required=True)
    p.add_argument("--cohort-map", help="a discovery's cohort-map.tsv; none: the cuts' own attribute")
    p.add_argument("--cuts", action="append", required=True, metavar="IN:OUT")
    p.add_argument("--base-config", required=True, help="the fine-tuning config the embedding is added to")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--config-out", required=True)
    args = p.parse_args()
    cmap = None
    names: List[str] = []
    if args.cohort_map:
        cmap = load_cohort_map(args.cohort_map)
        if args.key not in cmap.columns:
            raise SystemExit(f"{args.cohort_map}: not a cohort map of '{args.key}'")
        names = sorted({v[args.key] for v in cmap.values.values()})  # every cohort of the map, labelled or not
    for spec in args.cuts:
        src, sep, dst = spec.partition(":")
        if not sep:
            p.error(f"--cuts {spec}: expected IN:OUT")
        labelled = label(src, args.key, cmap)
        if cmap is None:
            names = sorted(set(names) | {c.supervisions[0].custom[args.key] for c in labelled})
        with atomic_path(dst) as tmp:
            labelled.to_file(tmp)
    base = os.path.relpath(Path(args.base_config).resolve(), Path(args.config_out).resolve().parent)
    cfg = {"base": base, "model": {"cohort_embedding": {"key": args.key, "cohorts": names, "dim": args.dim}}}
    atomic_write_text(args.config_out, "# written by local/label_cuts.py: the fine-tuning config plus a cohort "
                                        "embedding of the discovered cohorts\n" + yaml.safe_dump(cfg, sort_keys=False))


if __name__ == "__main__":
    main()
