#!/usr/bin/env python3
"""Estimate the diagonal empirical Fisher of a trained transducer on (a sample of) its training data, for EWC.

Usage:
  python -m serac.bin.estimate_fisher --exp-dir ../asr/exp/lstm --epoch 12 --avg 4 --lang-dir ../asr/data/lang_bpe_256 \
      --cuts data/asr/synth_cuts_train.jsonl.gz --num-batches 16 --max-duration 40 --out-dir exp/ewc

Writes to --out-dir:
  theta_star.pt   the (averaged) baseline as a checkpoint ({model, config, source}): the --init-from of every
                  fine-tuning variant, so theta* of the EWC penalty is exactly what fine-tuning starts from
  fisher.pt       {parameter name: F} (torch.save, atomic)
  fisher.json     how it was estimated: utterances, seconds, Fisher statistics, definition
Definition (per-utterance empirical Fisher of the per-frame loss): see serac/train/ewc.py.
An existing fisher.pt with the same settings (and the same baseline checkpoint files) is kept; --force re-estimates.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Iterator, List, Optional

import torch

from serac.data.dataset import load_cuts, train_dataloader
from serac.data.tokenizer import Tokenizer
from serac.train.ewc import fisher_diagonal, save_fisher
from serac.checkpoint import average_checkpoints, epoch_checkpoints, load_checkpoint, save_checkpoint
from serac.transducer.model import build_model
from serac.utils import atomic_write_text, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="the baseline's experiment directory")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--cuts", required=True, help="training cuts of the baseline (features)")
    p.add_argument("--num-batches", type=int, default=16, help="batches drawn (shuffled, seeded) from --cuts")
    p.add_argument("--max-duration", type=float, default=40.0, help="seconds of audio per batch")
    p.add_argument("--max-utts", type=int, default=0, help="stop after this many utterances (0: no limit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--force", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    setup_logging(out_dir / "log" / "estimate_fisher.log")
    logging.info(f"params: {vars(args)}")
    torch.set_num_threads(args.num_threads)
    settings = {k: v for k, v in vars(args).items() if k not in ("force", "num_threads", "out_dir")}
    paths = epoch_checkpoints(Path(args.exp_dir), args.epoch, args.avg)
    # a retrained baseline in the same place must not reuse an old estimate
    settings["checkpoints"] = [[str(p), p.stat().st_size, int(p.stat().st_mtime)] for p in paths]
    meta_path = out_dir / "fisher.json"
    if (out_dir / "fisher.pt").is_file() and meta_path.is_file() and not args.force:
        if json.loads(meta_path.read_text()).get("settings") == settings:
            logging.info(f"{out_dir}/fisher.pt exists with these settings; skipping")
            return

    last = load_checkpoint(paths[-1])
    cfg = last["config"]
    state = average_checkpoints(paths) if args.avg > 1 else last["model"]
    tokenizer = Tokenizer(args.lang_dir)
    cuts = load_cuts(args.cuts)
    num_features = next(iter(cuts)).num_features
    model = build_model(cfg["model"], num_features=num_features, vocab_size=tokenizer.vocab_size,
                        blank_id=tokenizer.blank_id)
    model.load_state_dict(state)
    save_checkpoint(out_dir / "theta_star.pt", model=model.state_dict(), config=cfg,
                    source={"exp_dir": str(args.exp_dir), "epoch": args.epoch, "avg": args.avg,
                            "checkpoints": [str(p) for p in paths]})

    loader = train_dataloader(cuts, args.max_duration, num_buckets=10, shuffle=True, seed=args.seed)
    loader.sampler.set_epoch(0)

    def batches() -> Iterator:
        for i, batch in enumerate(loader):
            if i >= args.num_batches:
                break
            sup = batch["supervisions"]
            yield batch["inputs"], sup["num_frames"], [tokenizer.encode(t) for t in sup["text"]]

    fisher, stats = fisher_diagonal(model, batches(), cfg["loss"], max_utts=args.max_utts)
    save_fisher(fisher, out_dir / "fisher.pt")
    per_module = {}
    for name, f in fisher.items():
        top = name.split(".")[0] if not name.startswith("encoder.") else ".".join(name.split(".")[:2])
        per_module[top] = per_module.get(top, 0.0) + float(f.sum())
    meta = {"settings": settings, "stats": stats, "fisher_sum_by_module": per_module,
            "theta_star": str(out_dir / "theta_star.pt")}
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    logging.info(f"Fisher over {stats['num_utts']} utterances in {stats['seconds']:.0f}s: sum {stats['fisher_sum']:.4g},"
                 f" mean {stats['fisher_mean']:.3g}, max {stats['fisher_max']:.3g} -> {out_dir}/fisher.pt")


if __name__ == "__main__":
    main()
