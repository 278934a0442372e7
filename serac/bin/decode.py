#!/usr/bin/env python3
"""Decode a cuts manifest with a trained transducer and write icefall-style results.

Usage:
  python -m serac.bin.decode --exp-dir exp/lstm --lang-dir data/lang_word --epoch 10 --avg 3 \
      --cuts data/fbank/yesno_cuts_test.jsonl.gz --set-name test --method greedy_search
  python -m serac.bin.decode ... --method modified_beam_search --beam 4
  # shallow fusion with a token n-gram LM (serac.bin.train_lm):
  python -m serac.bin.decode ... --method modified_beam_search --lm data/lang_bpe_64/lm-6gram.arpa --lm-scale 0.3
  # one shard of N (steps/decode.sh --nj N runs these as a job array, then merges):
  python -m serac.bin.decode ... --num-shards 3 --shard 2

Writes to <exp-dir>/decode/<set-name>/ (or --out-dir):
  recogs-<set>-<suffix>.txt, errs-<set>-<suffix>.txt, wer-summary-<set>-<suffix>.txt, stats-<set>-<suffix>.json
where <suffix> is e.g. greedy_search-epoch-10-avg-3 (modified_beam_search adds -beam-4, and with an LM
-lm-<scale>).
With --num-shards > 1 only recogs-<set>-<suffix>.shard-J.txt is written; serac.bin.merge_decode finishes.
An encoder that counts its executed FLOPs (``last_flops``, e.g. amortized_transformer) also gets
compute-<set>-<suffix>.tsv (per utterance: cut_id, frames, flops, dense_flops, flop_fraction; .shard-J.tsv per
shard) and the set's flop_fraction in the stats; the stats always hold encoder_seconds (encoder CPU time).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from serac.data.dataset import eval_dataloader, load_cuts
from serac.data.tokenizer import Tokenizer
from serac.lm.ngram import NgramLm, load_lm
from serac.scoring.wer import store_transcripts, write_error_stats, write_wer_summary
from serac.train.checkpoint import average_checkpoints, epoch_checkpoints, load_checkpoint
from serac.transducer.model import build_model
from serac.transducer.search import greedy_search_batch, modified_beam_search
from serac.utils import atomic_write_text, setup_logging

METHODS = ("greedy_search", "modified_beam_search")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1, help="average the last N epochs ending at --epoch")
    p.add_argument("--cuts", required=True)
    p.add_argument("--set-name", required=True)
    p.add_argument("--method", choices=METHODS, default="greedy_search")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lm", help="token n-gram LM in ARPA format for shallow fusion (modified_beam_search only)")
    p.add_argument("--lm-scale", type=float, default=0.3, help="weight of the LM log-probabilities (with --lm)")
    p.add_argument("--blank-penalty", type=float, default=0.0,
                   help="subtracted from the blank logit in modified_beam_search (counters LM deletions)")
    p.add_argument("--max-duration", type=float, default=300.0)
    p.add_argument("--out-dir", help="default: <exp-dir>/decode/<set-name>")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard", type=int, default=1, help="1-based shard index")
    p.add_argument("--num-threads", type=int, default=1)
    return p


def decode_suffix(method: str, epoch: int, avg: int, beam: int, lm_scale: Optional[float] = None,
                  blank_penalty: float = 0.0) -> str:
    """lm_scale: given when decoding with an LM. Must match steps/decode.sh's suffix."""
    suffix = f"{method}-epoch-{epoch}-avg-{avg}"
    if method == "modified_beam_search":
        suffix += f"-beam-{beam}" + (f"-lm-{lm_scale:g}" if lm_scale is not None else "")
        suffix += f"-bp-{blank_penalty:g}" if blank_penalty else ""
    return suffix


def load_model(exp_dir: Path, lang_dir: Path, epoch: int, avg: int, num_features: int):
    tokenizer = Tokenizer(lang_dir)
    paths = epoch_checkpoints(exp_dir, epoch, avg)
    last = load_checkpoint(paths[-1])
    cfg = last["config"]
    model = build_model(cfg["model"], num_features=num_features, vocab_size=tokenizer.vocab_size,
                        blank_id=tokenizer.blank_id)
    model.load_state_dict(average_checkpoints(paths) if avg > 1 else last["model"])
    return model.eval(), tokenizer, cfg


@torch.no_grad()
def decode_cuts(model, tokenizer: Tokenizer, cuts, method: str, beam: int, max_duration: float,
                compute: Optional[Dict[str, Any]] = None, lm: Optional[NgramLm] = None, lm_scale: float = 0.0,
                blank_penalty: float = 0.0) -> Tuple[List[Tuple[str, List[str], List[str]]], float, float]:
    """Returns (results, audio seconds, decoding seconds). With a ``compute`` dict, also fills in
    ``encoder_seconds`` (process CPU time in the encoder) and, when the encoder counts its FLOPs
    (``last_flops`` / ``last_dense_flops`` after each forward), ``rows``: (cut_id, frames, flops, dense_flops)."""
    results, audio_s, t0 = [], 0.0, time.time()
    compute = {} if compute is None else compute
    compute.setdefault("encoder_seconds", 0.0)
    for batch in eval_dataloader(cuts, max_duration):
        feats = batch["inputs"]
        x_lens = batch["supervisions"]["num_frames"]
        c0 = time.process_time()
        enc, enc_lens = model.encode(feats, x_lens)
        compute["encoder_seconds"] += time.process_time() - c0
        flops = getattr(model.encoder, "last_flops", None)
        if flops is not None:
            dense = model.encoder.last_dense_flops
            compute.setdefault("rows", []).extend(
                (cut.id, int(n), float(f), float(d))
                for cut, n, f, d in zip(batch["supervisions"]["cut"], enc_lens.tolist(), flops.tolist(), dense.tolist()))
        if method == "greedy_search":
            hyps = greedy_search_batch(model, enc, enc_lens)
        else:
            hyps = modified_beam_search(model, enc, enc_lens, beam=beam, lm=lm, lm_scale=lm_scale,
                                        blank_penalty=blank_penalty)
        for cut, text, hyp in zip(batch["supervisions"]["cut"], batch["supervisions"]["text"], hyps):
            results.append((cut.id, text.split(), tokenizer.decode(hyp).split()))
            audio_s += cut.duration
    return results, audio_s, time.time() - t0


def write_results(out_dir: Path, set_name: str, suffix: str, results, stats: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    store_transcripts(out_dir / f"recogs-{set_name}-{suffix}.txt", results)
    wer = write_error_stats(out_dir / f"errs-{set_name}-{suffix}.txt", f"{set_name}-{suffix}", results)
    write_wer_summary(out_dir / f"wer-summary-{set_name}-{suffix}.txt", {suffix: wer["wer"]})
    stats = {**stats, **wer}
    atomic_write_text(out_dir / f"stats-{set_name}-{suffix}.json", json.dumps(stats, indent=2) + "\n")
    logging.info(f"{set_name} {suffix}: WER {wer['wer']:.2f}% [{wer['errs']} / {wer['words']}, {wer['ins']} ins, "
                 f"{wer['del']} del, {wer['sub']} sub]")
    return stats


def write_compute(path: Path, rows: List[Tuple[str, int, float, float]]) -> Dict[str, float]:
    """Per-utterance executed encoder FLOPs (TSV, sorted by cut id); returns the set's totals and fraction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["cut_id\tframes\tflops\tdense_flops\tflop_fraction"]
    lines += [f"{c}\t{n}\t{f:.0f}\t{d:.0f}\t{f / max(d, 1.0):.4f}" for c, n, f, d in sorted(rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    flops, dense = sum(r[2] for r in rows), sum(r[3] for r in rows)
    return {"encoder_flops": flops, "encoder_dense_flops": dense, "flop_fraction": flops / max(dense, 1.0)}


def start_job(args) -> Tuple[Path, Path, Any, Any]:
    """The common start of a (possibly sharded) decoding job: threads, shard check, and the cuts with their first
    cut checked for features. Returns (exp dir, out dir, cuts, first cut)."""
    torch.set_num_threads(args.num_threads)
    if not 1 <= args.shard <= args.num_shards:
        raise SystemExit(f"--shard {args.shard} must be in 1..{args.num_shards}")
    exp_dir = Path(args.exp_dir)
    out_dir = Path(args.out_dir) if args.out_dir else exp_dir / "decode" / args.set_name
    cuts = load_cuts(args.cuts)
    first = next(iter(cuts), None)
    if first is None:
        raise SystemExit(f"{args.cuts}: no cuts")
    if first.num_features is None:
        raise SystemExit(f"{args.cuts}: cut {first.id} has no features (did the fbank stage run?)")
    return exp_dir, out_dir, cuts, first


def shard_of(cuts, shard: int, num_shards: int):
    """Shard ``shard`` (1-based) of ``num_shards``: every num_shards-th cut in id order."""
    if num_shards <= 1:
        return cuts
    ids = sorted(c.id for c in cuts)
    mine = set(ids[shard - 1 :: num_shards])
    return cuts.filter(lambda c: c.id in mine).to_eager()


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    exp_dir, out_dir, cuts, first = start_job(args)
    model, tokenizer, _ = load_model(exp_dir, Path(args.lang_dir), args.epoch, args.avg, first.num_features)
    lm = None
    if args.lm:
        if args.method != "modified_beam_search":
            raise SystemExit(f"--lm needs --method modified_beam_search, not {args.method}")
        lm = load_lm(args.lm, tokenizer.id2token)
    if args.blank_penalty and args.method != "modified_beam_search":
        raise SystemExit(f"--blank-penalty needs --method modified_beam_search, not {args.method}")
    suffix = decode_suffix(args.method, args.epoch, args.avg, args.beam, args.lm_scale if lm else None,
                           args.blank_penalty)
    cuts = shard_of(cuts, args.shard, args.num_shards)
    compute: Dict[str, Any] = {}
    results, audio_s, dec_s = decode_cuts(model, tokenizer, cuts, args.method, args.beam, args.max_duration,
                                          compute, lm=lm, lm_scale=args.lm_scale, blank_penalty=args.blank_penalty)
    stats = {"audio_seconds": audio_s, "decode_seconds": dec_s, "rtf": dec_s / max(audio_s, 1e-9),
             "num_threads": args.num_threads, "method": args.method, "epoch": args.epoch, "avg": args.avg,
             "encoder_seconds": compute["encoder_seconds"]}
    if lm is not None:
        stats.update(lm=str(args.lm), lm_order=lm.order, lm_scale=args.lm_scale)
    if args.blank_penalty:
        stats["blank_penalty"] = args.blank_penalty
    if compute.get("rows"):
        shard = f".shard-{args.shard}" if args.num_shards > 1 else ""
        stats.update(write_compute(out_dir / f"compute-{args.set_name}-{suffix}{shard}.tsv", compute["rows"]))
    if args.num_shards > 1:
        out_dir.mkdir(parents=True, exist_ok=True)
        store_transcripts(out_dir / f"recogs-{args.set_name}-{suffix}.shard-{args.shard}.txt", results)
        atomic_write_text(out_dir / f"stats-{args.set_name}-{suffix}.shard-{args.shard}.json", json.dumps(stats) + "\n")
        logging.info(f"shard {args.shard}/{args.num_shards}: {len(results)} utterances")
        return
    write_results(out_dir, args.set_name, suffix, results, stats)


if __name__ == "__main__":
    main()
