#!/usr/bin/env python3
"""Pick the target (worst) cohorts on the baseline's dev decode and build the training manifests of the
mitigation variants, all of the same total duration so that every variant trains for the same number of steps:

  adapt_pool.jsonl.gz       adapt-split cuts of the target cohorts' held-out speakers (fine-tuning, EWC)
  continue.jsonl.gz         a seeded random subset of all training cuts, same duration (continued training)
  oversample_full.jsonl.gz  all training cuts, the target cohorts' training speakers' cuts repeated k times
  oversample.jsonl.gz       a seeded random subset of oversample_full, same duration (oversampling)
  targets.json              the dev ranking, the targets, sizes and durations

The cohorts are a cut attribute (``--key region``) or a discovered cohort from a cohort map of
serac.bin.discover_cohorts (``--key geo_region|geodemo|auto_cohort --cohort-map exp/discovery/<method>/cohort-map.tsv``;
the map must label the adapt and training speakers too: stage 1 of run.sh passes them as --label-cuts). Every
adapt and training cut must get a cohort: one without is an error naming it.

Usage: local/make_adapt_sets.py --dev-recogs R --dev-cuts C --key region --num-targets 2 \
         --adapt-cuts A --train-cuts T --oversample-factor 4 --out-dir data/sets
       local/make_adapt_sets.py ... --key auto_cohort --cohort-map exp/discovery/auto/cohort-map.tsv --num-targets 1 ...
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Optional

from lhotse import load_manifest_lazy

from serac.fairness.cohort_metrics import (CohortMap, apply_cohort_maps, cohort_wer, load_cohort_map,
                                           load_cut_attributes)
from serac.fairness.oversample import oversample_cuts, sample_by_duration, select_speakers, total_duration
from serac.utils import atomic_path, atomic_write_text


def speaker_cohorts(cuts_path: str, key: str, cohort_map: Optional[CohortMap]) -> Dict[str, str]:
    """``{speaker: cohort}`` of a manifest's speakers; a cut the attributes (and the map) give no ``key`` is an
    error naming it: its speaker could be a target's and would silently be left out of the sets."""
    attrs = load_cut_attributes(cuts_path)
    if cohort_map is not None:
        attrs = apply_cohort_maps(attrs, [cohort_map])
    out: Dict[str, str] = {}
    for cut_id, a in attrs.items():
        if key not in a:
            where = (f"not in the cohort map {cohort_map.path} (discover the cohorts with this manifest as "
                     f"--label-cuts: stage 1 of run.sh)" if cohort_map is not None else "no such attribute")
            raise ValueError(f"{cuts_path}: cut {cut_id!r} (speaker {a.get('speaker')!r}) has no {key!r}: {where}")
        out[str(a.get("speaker", cut_id))] = str(a[key])
    return out


def write(cuts, path: Path) -> None:
    with atomic_path(path) as tmp:
        cuts.to_file(tmp)


def main(argv: Optional[list] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev-recogs", required=True)
    p.add_argument("--dev-cuts", required=True)
    p.add_argument("--key", default="region",
                   help="cohort attribute to target (region, or geo_region / geodemo / auto_cohort with --cohort-map)")
    p.add_argument("--cohort-map", help="cohort map providing --key (a discovery's cohort-map.tsv)")
    p.add_argument("--num-targets", type=int, default=2)
    p.add_argument("--adapt-cuts", required=True)
    p.add_argument("--train-cuts", required=True)
    p.add_argument("--oversample-factor", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out_dir)
    cmap = load_cohort_map(args.cohort_map) if args.cohort_map else None

    attrs = load_cut_attributes(args.dev_cuts)
    if cmap is not None:
        attrs = apply_cohort_maps(attrs, [cmap])
    report = cohort_wer(args.dev_recogs, attrs, args.key, n_bootstrap=0)
    ranking = sorted(report.cohorts, key=lambda c: (-c.wer, c.cohort))
    if not 1 <= args.num_targets < len(ranking):
        raise SystemExit(f"--num-targets {args.num_targets}: choose 1 to {len(ranking) - 1}: dev has "
                         f"{len(ranking)} {args.key} cohorts ({', '.join(c.cohort for c in ranking)}) and targeting "
                         f"all of them leaves no other cohort")
    targets = [c.cohort for c in ranking[: args.num_targets]]
    logging.info(f"dev WER by {args.key}: " + ", ".join(f"{c.cohort} {c.wer:.2f}" for c in ranking))
    logging.info(f"targets: {targets}")

    try:
        adapt_spk = speaker_cohorts(args.adapt_cuts, args.key, cmap)
        train_spk = speaker_cohorts(args.train_cuts, args.key, cmap)
    except ValueError as e:
        raise SystemExit(str(e))
    adapt_speakers = sorted(s for s, c in adapt_spk.items() if c in targets)
    train_targets = sorted(s for s, c in train_spk.items() if c in targets)
    if not adapt_speakers:
        raise SystemExit(f"no adapt speaker in the target cohorts {targets}")
    adapt = select_speakers(load_manifest_lazy(args.adapt_cuts), adapt_speakers).to_eager()
    dur = total_duration(adapt)
    train = load_manifest_lazy(args.train_cuts).to_eager()
    cont = sample_by_duration(train, dur, seed=args.seed)
    over_full = oversample_cuts(train, train_targets, args.oversample_factor)
    over = sample_by_duration(over_full, dur, seed=args.seed)
    for cuts, name in ((adapt, "adapt_pool"), (cont, "continue"), (over_full, "oversample_full"), (over, "oversample")):
        write(cuts, out / f"{name}.jsonl.gz")

    def share(cuts) -> float:
        n = sum(1 for c in cuts if c.supervisions[0].speaker in set(train_targets) | set(adapt_speakers))
        return 100.0 * n / max(len(cuts), 1)

    meta = {
        "key": args.key, "cohort_map": args.cohort_map, "num_targets": args.num_targets, "targets": targets,
        "dev_ranking": [{"cohort": c.cohort, "wer": c.wer, "speakers": c.num_speakers, "words": c.num_words}
                        for c in ranking],
        "adapt_speakers": adapt_speakers, "train_target_speakers": len(train_targets),
        "oversample_factor": args.oversample_factor, "seed": args.seed,
        "sets": {name: {"cuts": len(c), "seconds": round(total_duration(c), 1), "target_share_pct": round(share(c), 1)}
                 for name, c in (("adapt_pool", adapt), ("continue", cont), ("oversample_full", over_full),
                                 ("oversample", over))},
    }
    atomic_write_text(out / "targets.json", json.dumps(meta, indent=2) + "\n")
    (out / "targets.txt").write_text("\n".join(targets) + "\n")
    logging.info(json.dumps(meta["sets"]))


if __name__ == "__main__":
    main()
