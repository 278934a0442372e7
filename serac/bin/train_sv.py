#!/usr/bin/env python3
"""Train serac's speaker-embedding model (small ECAPA-TDNN, additive-margin softmax), optionally with adversarial
reweighting (variants none, aps, pl, pw: see serac/speaker/train.py).

Usage:
  python -m serac.bin.train_sv --config conf/ecapa_small.yaml --train-cuts data/fbank/synth_cuts_train.jsonl.gz \
      --exp-dir exp/pw --set arw.variant=pw --num-threads 1
  # writes exp/pw/model.pt, exp/pw/train-summary.json and exp/pw/config.yaml; skips when model.pt exists
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import yaml

from serac.speaker.train import load_sv_config, train_speaker_model
from serac.utils import atomic_write_text, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML over serac.speaker.train.SV_DEFAULTS")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. arw.variant=pw")
    p.add_argument("--train-cuts", required=True, help="cuts with fbank features and speakers")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--cohort-keys", default="gender,accent",
                   help="attributes whose mean ARW weight is reported in train-summary.json (never used to train)")
    p.add_argument("--force", action="store_true", help="retrain even if model.pt exists")
    return p


def main() -> None:
    args = get_parser().parse_args()
    exp_dir = Path(args.exp_dir)
    setup_logging(exp_dir / "log" / "train-sv.log")
    torch.set_num_threads(args.num_threads)
    if (exp_dir / "model.pt").is_file() and not args.force:
        logging.info(f"{exp_dir}/model.pt exists; skipping (use --force to retrain)")
        return
    cfg = load_sv_config(args.config, args.set)
    logging.info("config:\n" + yaml.safe_dump(cfg, sort_keys=False))
    exp_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(exp_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    out = train_speaker_model(cfg, args.train_cuts, exp_dir, [k for k in args.cohort_keys.split(",") if k])
    logging.info(f"wrote {out}")


if __name__ == "__main__":
    main()
