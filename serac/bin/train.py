#!/usr/bin/env python3
"""Train a transducer (any registered encoder) from a YAML config.

Usage:
  python -m serac.bin.train --config conf/lstm.yaml --exp-dir exp/lstm --lang-dir data/lang_word \
      --train-cuts data/fbank/yesno_cuts_train.jsonl.gz --valid-cuts data/fbank/yesno_cuts_test.jsonl.gz
  # override any config value, resume from epoch 3:
  python -m serac.bin.train ... --set train.num_epochs=20 --set model.encoder.hidden_dim=512 --start-epoch 4
  # two processes on one machine (gloo on CPU, nccl on GPU):
  torchrun --standalone --nproc-per-node 2 -m serac.bin.train ...

Exit status 1 with one error line when the run diverged (too many non-finite steps, a non-finite validation loss;
no checkpoint written) or another live training holds --exp-dir. What it checks: docs/faults-training.md.
"""
from __future__ import annotations

import argparse
import logging
import sys

from serac.config import load_config


def add_path_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("paths")
    g.add_argument("--config", help="YAML config (see egs/*/asr/conf/)")
    g.add_argument("--exp-dir", required=True, help="experiment directory: checkpoints, logs, tensorboard")
    g.add_argument("--lang-dir", required=True, help="token inventory (tokens.txt, bpe.model)")
    g.add_argument("--train-cuts", required=True)
    g.add_argument("--valid-cuts", required=True)
    g.add_argument("--init-from", help="initialise the model from this checkpoint (fine-tuning); with "
                   "train.init_modules only those modules (serac/train/partial_init.py)")
    g.add_argument("--init-lang-dir", help="the --init-from model's lang dir: with train.init_modules, the "
                   "vocabulary-indexed rows are copied by token symbol")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--num-epochs", type=int, help="overrides train.num_epochs")
    g.add_argument("--start-epoch", type=int, default=0,
                   help="resume from epoch-(N-1).pt; 0 (default) resumes after the last checkpoint found")
    g.add_argument("--seed", type=int, help="overrides train.seed")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_arguments(parser)
    add_training_arguments(parser)
    return parser


def main() -> None:
    args = get_parser().parse_args()
    overrides = list(args.set)
    if args.num_epochs is not None:
        overrides.append(f"train.num_epochs={args.num_epochs}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    cfg = load_config(args.config, overrides)
    from serac.train.exp_lock import ExperimentLocked
    from serac.train.trainer import TrainingDiverged, train

    try:
        train(args, cfg)
    except (ExperimentLocked, TrainingDiverged) as e:
        # expected ways for a run to stop: the message says what happened and what to do, a traceback would not
        logging.error(str(e))
        sys.exit(1)


if __name__ == "__main__":
    main()
