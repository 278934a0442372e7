#!/usr/bin/env python3
"""Encoder CPU time of several trained models on the same cuts, measured in one process, interleaved.

Every batch of the cuts is encoded by every model in turn (the order rotating from batch to batch, ``--repeats``
passes), with one torch thread; process CPU time of ``model.encode`` is summed per model. Interleaving puts
every model through the same machine load, so the ratios hold on a shared machine even when absolute times do
not. Encoders that count their FLOPs (``last_flops``, e.g. amortized_transformer) also get their executed
FLOPs, encoders with gates (``last_gates``) the fraction of valid frames each block's modules ran on
(``gate_on_fraction``: per block, [MHA, FFN]), and every model its ratios to the ``--reference`` model.

Usage:
  python -m serac.bin.time_encoders --cuts data/fbank/synth_cuts_test.jsonl.gz --lang-dir data/lang_bpe_256 \
      --model dense=exp/dense:3:1 --model cw-0.3=exp/amortized-cw0.3:3:1 --reference dense \
      --repeats 2 --out exp/encoder-time.json
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Tuple

import torch

from serac.data.dataset import eval_dataloader, load_cuts
from serac.decode.job import load_model
from serac.encoders.cost import time_encoders
from serac.utils import MISSING, atomic_write_text, setup_logging


def parse_model(spec: str) -> Tuple[str, Path, int, int]:
    """``name=exp_dir:epoch:avg`` -> (name, exp_dir, epoch, avg)."""
    try:
        name, rest = spec.split("=", 1)
        exp_dir, epoch, avg = rest.rsplit(":", 2)
        return name, Path(exp_dir), int(epoch), int(avg)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--model {spec!r}: expected name=exp_dir:epoch:avg") from None


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--model", type=parse_model, action="append", required=True, metavar="NAME=EXP:EPOCH:AVG")
    p.add_argument("--reference", help="ratios are taken against this model (default: the first)")
    p.add_argument("--repeats", type=int, default=2, help="passes over the cuts")
    p.add_argument("--max-duration", type=float, default=100.0)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON; a TSV with the same stem is written next to it")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    torch.set_num_threads(args.num_threads)
    cuts = load_cuts(args.cuts)
    num_features = next(iter(cuts)).num_features
    models = {}
    for name, exp_dir, epoch, avg in args.model:
        models[name], _, _ = load_model(exp_dir, Path(args.lang_dir), epoch, avg, num_features)
    reference = args.reference or args.model[0][0]
    if reference not in models:
        raise SystemExit(f"--reference {reference} is not one of the --model names {list(models)}")
    batches = [(b["inputs"], b["supervisions"]["num_frames"]) for b in eval_dataloader(cuts, args.max_duration)]
    audio_s = sum(c.duration for c in cuts)
    totals = time_encoders(models, batches, args.repeats)
    ref = totals[reference]
    rows = {}
    for name, t in totals.items():
        rows[name] = {**t, "time_vs_reference": t["encoder_cpu_s"] / ref["encoder_cpu_s"],
                      "speedup_vs_reference": ref["encoder_cpu_s"] / t["encoder_cpu_s"],
                      "rtf": t["encoder_cpu_s"] / (args.repeats * audio_s),
                      "flops_vs_reference": (t["flops"] / ref["flops"]) if ref["flops"] else None}
        logging.info(f"{name}: encoder CPU {t['encoder_cpu_s']:.2f} s ({rows[name]['time_vs_reference']:.3f} x "
                     f"{reference}), FLOPs {rows[name]['flops_vs_reference'] or float('nan'):.3f} x {reference}")
    out = {"reference": reference, "repeats": args.repeats, "num_threads": args.num_threads,
           "audio_seconds": audio_s, "num_batches": len(batches), "cuts": args.cuts, "models": rows}
    out_path = Path(args.out)
    atomic_write_text(out_path, json.dumps(out, indent=2) + "\n")
    cols = ["encoder_cpu_s", "encoder_wall_s", "time_vs_reference", "speedup_vs_reference", "flops",
            "flops_vs_reference"]
    lines = ["model\t" + "\t".join(cols)]
    lines += [name + "\t" + "\t".join(MISSING if r[c] is None else f"{r[c]:.4g}" for c in cols) for name, r in rows.items()]
    atomic_write_text(out_path.with_suffix(".tsv"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
