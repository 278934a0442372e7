#!/usr/bin/env python3
"""Encoder cost on one CPU core: training throughput, streaming real-time factor, parameters and FLOPs.

For each encoder (default config, 80-dim fbank input, output_dim 256):

* train: forward + backward of a batch (default 8 utterances x 4 s, dummy loss ``output.pow(2).mean()``),
  reported as seconds of audio processed per wall-clock second on one thread (higher is better);
* stream: chunk-by-chunk ``streaming_forward`` of one utterance (batch 1) in 160 ms chunks (rounded up to
  the encoder's ``chunk_multiple``), reported as real-time factor = wall time / audio time (lower is better);
* params and GFLOPs per second of audio (``serac.encoders.cost.encoder_flops_per_second``).

Each figure is also printed as a ratio against the LSTM encoder measured in the same run. Timings are
figures, never pass/fail: on a shared machine they move from run to run.

Usage:
  python bench/bench_encoders.py
  python bench/bench_encoders.py --encoders lstm conv_rnnt --repeats 5 --batch 4 --seconds 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from serac.encoders import build_encoder  # noqa: E402
from serac.encoders.cost import count_parameters, encoder_flops_per_second  # noqa: E402

FRAMES_PER_SECOND = 100


def train_throughput(encoder, args) -> float:
    """Seconds of audio per wall second for forward + backward."""
    encoder.train()
    frames = int(args.seconds * FRAMES_PER_SECOND)
    x = torch.randn(args.batch, frames, args.num_features)
    x_lens = torch.full((args.batch,), frames, dtype=torch.long)

    def step() -> None:
        encoder.zero_grad(set_to_none=True)
        y, _ = encoder(x, x_lens)
        y.pow(2).mean().backward()

    step()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return args.batch * args.seconds / statistics.median(times)


@torch.no_grad()
def streaming_rtf(encoder, args) -> tuple:
    """Real-time factor of chunk-by-chunk encoding (batch 1); returns (rtf, chunk length in ms)."""
    encoder.eval()
    chunk_frames = int(args.chunk_ms * FRAMES_PER_SECOND / 1000)
    chunk_frames = -(-chunk_frames // encoder.chunk_multiple) * encoder.chunk_multiple
    num_chunks = max(1, int(args.stream_seconds * FRAMES_PER_SECOND) // chunk_frames)
    x = torch.randn(1, num_chunks * chunk_frames, args.num_features)
    state = encoder.init_state(1, x.device)
    encoder.streaming_forward(x[:, :chunk_frames], state)  # warm-up
    times = []
    for _ in range(args.repeats):
        state = encoder.init_state(1, x.device)
        start = time.perf_counter()
        for i in range(num_chunks):
            _, state = encoder.streaming_forward(x[:, i * chunk_frames:(i + 1) * chunk_frames], state)
        times.append(time.perf_counter() - start)
    audio_seconds = x.size(1) / FRAMES_PER_SECOND
    return statistics.median(times) / audio_seconds, chunk_frames * 1000 // FRAMES_PER_SECOND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["lstm", "conv_rnnt", "conformer", "contextnet"])
    parser.add_argument("--num-features", type=int, default=80)
    parser.add_argument("--output-dim", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length for the training step")
    parser.add_argument("--stream-seconds", type=float, default=8.0)
    parser.add_argument("--chunk-ms", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if "lstm" not in args.encoders:
        args.encoders = ["lstm"] + args.encoders  # the reference every ratio is taken against

    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} train batch={args.batch}x{args.seconds:g}s stream={args.stream_seconds:g}s "
          f"in {args.chunk_ms} ms chunks, median of {args.repeats}")
    rows = {}
    for name in args.encoders:
        torch.manual_seed(0)
        encoder = build_encoder(args.num_features, {"name": name, "output_dim": args.output_dim})
        params = count_parameters(encoder)
        gflops = encoder_flops_per_second(encoder, args.num_features) / 1e9
        throughput = train_throughput(encoder, args)
        rtf, chunk_ms = streaming_rtf(encoder, args)
        rows[name] = dict(params=params, gflops=gflops, throughput=throughput, rtf=rtf, chunk_ms=chunk_ms,
                          look_ahead=encoder.look_ahead, chunk_multiple=encoder.chunk_multiple)
        print(f"  measured {name}", flush=True)

    ref = rows["lstm"]
    header = (f"{'encoder':<11} {'params':>8} {'x lstm':>6} {'GFLOP/s':>7} {'x lstm':>6} {'train s/s':>9} "
              f"{'x lstm':>6} {'stream RTF':>10} {'x lstm':>6} {'chunk':>6} {'look-ahead':>10}")
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(f"{name:<11} {r['params'] / 1e6:7.2f}M {r['params'] / ref['params']:6.2f} {r['gflops']:7.3f} "
              f"{r['gflops'] / ref['gflops']:6.2f} {r['throughput']:9.1f} {r['throughput'] / ref['throughput']:6.2f} "
              f"{r['rtf']:10.4f} {r['rtf'] / ref['rtf']:6.2f} {r['chunk_ms']:4d}ms {r['look_ahead'] * 10:8d}ms")
    print("train s/s: seconds of audio per wall second for forward+backward (higher is faster); "
          "stream RTF: wall / audio time (lower is faster); look-ahead in ms of input.")


if __name__ == "__main__":
    main()
