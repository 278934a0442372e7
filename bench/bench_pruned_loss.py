#!/usr/bin/env python3
"""Time and peak memory of one training step of the pruned RNN-T loss vs the full RNN-T loss.

Shapes like LibriSpeech training (B=30, T~250 encoder frames, S~60 tokens, vocab 500, joiner dim 512);
one step = joiner + loss forward + backward. Each variant runs in its own process so peak RSS is its own.

Usage:
  python bench/bench_pruned_loss.py                 # both variants, prints figures and ratios
  python bench/bench_pruned_loss.py --repeats 5 --threads 2
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_variant(variant: str, args) -> dict:
    import torch

    from serac.transducer import loss as rnnt
    from serac.transducer.model import Joiner

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, t, s, v, d = args.batch, args.frames, args.tokens, args.vocab, args.joiner_dim
    x_lens = torch.randint(int(t * 0.8), t + 1, (b,))
    x_lens[0] = t
    y_lens = torch.randint(int(s * 0.8), s + 1, (b,))
    y_lens[0] = s
    symbols = torch.randint(1, v, (b, s))
    enc = torch.randn(b, t, d, requires_grad=True)
    dec = torch.randn(b, s + 1, d, requires_grad=True)
    joiner = Joiner(d, d, d, v)
    simple_am, simple_lm = torch.nn.Linear(d, v), torch.nn.Linear(d, v)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step():
        am, lm = joiner.encoder_proj(enc), joiner.decoder_proj(dec)
        if variant == "pruned":
            simple, pruned = rnnt.pruned_rnnt_loss(am=am, lm=lm, simple_am=simple_am(enc), simple_lm=simple_lm(dec),
                                                   joiner=joiner, symbols=symbols, x_lens=x_lens, y_lens=y_lens,
                                                   prune_range=5)
            loss = 0.5 * simple + pruned
        else:
            logits = joiner(am[:, :, None, :], lm[:, None, :, :], project_input=False)
            loss = rnnt.full_rnnt_loss(logits, symbols, x_lens, y_lens)
        loss.backward()

    step()  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "peak_mb": (peak - base_rss) / 1024.0, "backend": rnnt.backend_name}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=30)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--tokens", type=int, default=60)
    p.add_argument("--vocab", type=int, default=500)
    p.add_argument("--joiner-dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", choices=["pruned", "full"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
        return
    res = {}
    for variant in ("pruned", "full"):
        cmd = [sys.executable, __file__, "--variant", variant] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "variant" and v is not None]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        res[variant] = json.loads(out)
    print(f"one training step (joiner + loss + backward), B={args.batch} T={args.frames} S={args.tokens} "
          f"V={args.vocab} joiner_dim={args.joiner_dim}, {args.threads} threads, backend {res['pruned']['backend']}")
    print(f"{'variant':8s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'peak MB (over baseline)':>24s}")
    for v in ("pruned", "full"):
        r = res[v]
        print(f"{v:8s} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} {r['peak_mb']:24.1f}")
    print(f"ratio full/pruned: time {res['full']['median_s'] / res['pruned']['median_s']:.1f}x, "
          f"memory {res['full']['peak_mb'] / max(res['pruned']['peak_mb'], 1e-9):.1f}x "
          f"(the pruned RNN-T paper reports ~6x time and ~5x memory on GPU)")


if __name__ == "__main__":
    main()
