#!/usr/bin/env python3
"""Make a speaker-verification trial list over the speakers of cut manifests (held-out speakers), balanced by
accent and gender (serac/speaker/trials.py).

Usage:
  python -m serac.bin.sv_trials --cuts data/fbank/synth_cuts_dev.jsonl.gz,data/fbank/synth_cuts_test.jsonl.gz \
      --balance-keys accent,gender --attribute-keys gender,accent --out data/trials/synth.tsv
  # alphanumeric: every speaker, no balancing, impostors of the same gender
  python -m serac.bin.sv_trials --cuts data/fbank/alnum_cuts_all.jsonl.gz --balance-keys "" \
      --unequal-target-counts --attribute-keys gender,native_group --out data/trials/alnum.tsv
"""
from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from pathlib import Path

from lhotse import load_manifest_lazy

from serac.speaker.train import supervision_attributes
from serac.speaker.trials import make_trials, select_balanced_speakers, trial_counts, utterance_id, write_trials
from serac.utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", required=True, help="comma-separated cut manifests")
    p.add_argument("--out", required=True)
    p.add_argument("--balance-keys", default="accent,gender", help="empty: use every speaker")
    p.add_argument("--attribute-keys", default="gender,accent", help="enrolment-speaker columns of the list")
    p.add_argument("--impostor-match", default="gender", help="impostors share these attributes (empty: any)")
    p.add_argument("--num-target", type=int, default=15, help="target trials per speaker (at most)")
    p.add_argument("--num-nontarget", type=int, default=30, help="non-target trials per speaker")
    p.add_argument("--unequal-target-counts", action="store_true",
                   help="cap each speaker's target trials by its own utterance pairs, not by the fewest of any")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    out = Path(args.out)
    if out.is_file() and not args.force:
        logging.info(f"{out} exists; skipping")
        return
    utterances, attrs = defaultdict(list), {}
    for path in args.cuts.split(","):
        for cut in load_manifest_lazy(path):
            if not cut.supervisions or not cut.supervisions[0].speaker:
                raise ValueError(f"{path}: cut {cut.id} has no speaker")
            sup = cut.supervisions[0]
            utterances[sup.speaker].append(utterance_id(cut))
            attrs.setdefault(sup.speaker, supervision_attributes(sup))
    balance = [k for k in args.balance_keys.split(",") if k]
    speakers = select_balanced_speakers(attrs, balance, seed=args.seed) if balance else sorted(utterances)
    keys = [k for k in args.attribute_keys.split(",") if k]
    trials = make_trials(utterances, attrs, speakers, args.num_target, args.num_nontarget,
                         impostor_match=[k for k in args.impostor_match.split(",") if k], attribute_keys=keys,
                         seed=args.seed, equal_target_counts=not args.unequal_target_counts)
    write_trials(trials, out)
    logging.info(f"{out}: {len(trials)} trials over {len(speakers)} of {len(utterances)} speakers")
    for key in keys:
        logging.info(f"  by {key} (target, non-target): {trial_counts(trials, key)}")


if __name__ == "__main__":
    main()
