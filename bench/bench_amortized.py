#!/usr/bin/env python3
"""Amortized Transformer: encoder forward time vs the dense encoder at forced skip rates, one CPU thread.

One dense encoder (``arbitrators: false``) and the same weights with arbitrators; for each skip rate the
arbitrators' output biases are set so that that fraction of the frames has each module (MHA and FFN) off in
every block (calibrated block by block on the benchmark input: the real gating path, not a mock). Reported per
rate, all in one run so the ratios share the machine's load:

* counted FLOPs (executed / dense) from the encoder's own count;
* batch forward (eval, default 8 utterances x 4 s): gathered inference (skipped frames not computed) and, for
  contrast, the masked computation (every module on every frame, multiplied by the gates);
* streaming: chunk-by-chunk ``streaming_forward`` of one utterance (default 8 s in 640 ms chunks);
* training (encoder forward + backward, dense and gated): the attention computed in blocks, as training does,
  against one window per chunk (the same outputs; ``tests/test_amortized.py`` checks it).

Each figure is the fastest of ``--repeats`` rounds in which all the timed calls take turns.

Figures and ratios only, never pass/fail: timings move with the machine's load.

Usage:
  python bench/bench_amortized.py
  python bench/bench_amortized.py --rates 0 0.5 0.9 --repeats 7 --dim 256 --num-layers 12
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from serac.encoders import build_encoder  # noqa: E402
from serac.encoders.cost import count_parameters  # noqa: E402

FRAMES_PER_SECOND = 100


@torch.no_grad()
def force_skip_rate(encoder, x: torch.Tensor, lens: torch.Tensor, rate: float) -> None:
    """Shift each block's arbitrator output biases so that ``rate`` of the valid frames have each gate off."""
    encoder.eval()
    for block in encoder.blocks:
        captured: List[torch.Tensor] = []
        hook = block.arbitrator.register_forward_hook(lambda _m, _i, out: captured.append(out))
        encoder(x, lens)
        hook.remove()
        valid = torch.arange(captured[0].size(1))[None, :] < torch.div(lens, 4, rounding_mode="floor")[:, None]
        logits = captured[0][valid]  # (frames, 2)
        for gate in range(2):
            if rate <= 0:
                shift = -logits[:, gate].min() + 1.0  # every gate on
            elif rate >= 1:
                shift = -logits[:, gate].max() - 1.0  # every gate off
            else:
                shift = -torch.quantile(logits[:, gate], rate)
            block.arbitrator.out.bias[gate] += shift


def interleaved_min(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Seconds per call of each function: the functions take turns, ``repeats`` rounds, and each keeps its
    fastest round (on a shared machine the least disturbed one; taking turns exposes all to the same load)."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@torch.no_grad()
def stream(encoder, x: torch.Tensor, chunk: int) -> None:
    state = encoder.init_state(1, x.device)
    for i in range(0, x.size(1), chunk):
        _, state = encoder.streaming_forward(x[:, i:i + chunk], state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--num-layers", type=int, default=6)
    parser.add_argument("--ffn-dim", type=int, default=768)
    parser.add_argument("--left-context", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--stream-seconds", type=float, default=8.0)
    parser.add_argument("--chunk-ms", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = {"name": "amortized_transformer", "dim": args.dim, "num_layers": args.num_layers, "ffn_dim": args.ffn_dim,
           "left_context": args.left_context}
    torch.manual_seed(0)
    dense = build_encoder(80, {**cfg, "arbitrators": False}).eval()
    amortized = build_encoder(80, cfg).eval()
    amortized.load_state_dict(dense.state_dict())  # same weights; arbitrators keep their initialisation
    frames = int(args.seconds * FRAMES_PER_SECOND)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, frames, 80, generator=g)
    lens = torch.full((args.batch,), frames, dtype=torch.long)
    chunk = max(1, round(args.chunk_ms * FRAMES_PER_SECOND / 1000 / amortized.chunk_multiple)) * amortized.chunk_multiple
    xs = torch.randn(1, int(args.stream_seconds * FRAMES_PER_SECOND) // chunk * chunk, 80, generator=g)

    print(f"threads={args.threads} dim={args.dim} layers={args.num_layers} ffn={args.ffn_dim} "
          f"left_context={args.left_context}: dense {count_parameters(dense) / 1e6:.2f}M params, amortized "
          f"{count_parameters(amortized) / 1e6:.2f}M; batch {args.batch}x{args.seconds:g}s, stream "
          f"{xs.size(1) / 100:g}s in {chunk * 10} ms chunks; fastest of {args.repeats} interleaved rounds")
    header = (f"{'skip':>5} {'FLOPs':>6} {'dense ms':>8} {'gathered ms':>11} {'x dense':>7} {'masked ms':>9} "
              f"{'x dense':>7} {'stream dense':>12} {'stream ms':>9} {'x dense':>7}")
    print(header)
    print("-" * len(header))
    for rate in args.rates:
        force_skip_rate(amortized, x, lens, rate)
        with torch.no_grad():
            amortized(x, lens)
            flops = float(amortized.last_flops.sum() / amortized.last_dense_flops.sum())

            def masked() -> None:
                amortized.set_gather(False)
                amortized(x, lens)
                amortized.set_gather(True)

            t = interleaved_min({"dense": lambda: dense(x, lens), "gathered": lambda: amortized(x, lens),
                                 "masked": masked, "stream_dense": lambda: stream(dense, xs, chunk),
                                 "stream": lambda: stream(amortized, xs, chunk)}, args.repeats)
        print(f"{rate:5.2f} {flops:6.3f} {1000 * t['dense']:8.1f} {1000 * t['gathered']:11.1f} "
              f"{t['gathered'] / t['dense']:7.2f} {1000 * t['masked']:9.1f} {t['masked'] / t['dense']:7.2f} "
              f"{1000 * t['stream_dense']:12.1f} {1000 * t['stream']:9.1f} {t['stream'] / t['stream_dense']:7.2f}")
    print("skip: forced fraction of frames with each module off in every block; FLOPs: counted executed / dense "
          "(arbitrators included); gathered: skipped frames not computed; masked: all computed, gates multiplied.")
    train_step_figures(dense, amortized, x, lens, args.repeats)


def train_step_figures(dense, amortized, x: torch.Tensor, lens: torch.Tensor, repeats: int) -> None:
    """Training (encoder forward + backward) with the attention in blocks (``ChunkedSelfAttention.block_frames``,
    what training uses) against one window per chunk (what evaluation runs and the FLOP count counts): the same
    outputs, different matmul shapes. Interleaved in this process, so the ratio shares the machine's load."""
    from serac.encoders.streaming import ChunkedSelfAttention

    def step(encoder, block_frames: int) -> Callable[[], None]:
        def run() -> None:
            for b in encoder.blocks:
                b.attn.block_frames = block_frames
            encoder.zero_grad(set_to_none=True)
            y, _ = encoder(x, lens)
            (y.pow(2).mean() + (encoder.aux_loss if encoder.aux_loss is not None else 0.0)).backward()
        return run

    dense.train()
    amortized.train()
    blocked = ChunkedSelfAttention.block_frames
    t = interleaved_min({"dense_blocks": step(dense, blocked), "dense_windows": step(dense, 0),
                         "gated_blocks": step(amortized, blocked), "gated_windows": step(amortized, 0)}, repeats)
    print(f"training step (encoder fwd+bwd, batch {x.size(0)}x{x.size(1) / FRAMES_PER_SECOND:g}s): attention in "
          f"blocks of {blocked} frames vs one window per chunk, ms (ratio): dense {1000 * t['dense_blocks']:.1f} vs "
          f"{1000 * t['dense_windows']:.1f} ({t['dense_blocks'] / t['dense_windows']:.2f}), gated "
          f"{1000 * t['gated_blocks']:.1f} vs {1000 * t['gated_windows']:.1f} "
          f"({t['gated_blocks'] / t['gated_windows']:.2f})")


if __name__ == "__main__":
    main()
