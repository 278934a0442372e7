#!/usr/bin/env python3
"""Encoder cost on one CPU core against the machine's own limit: the fp32 GEMM peak, each encoder's achieved
training FLOP/s, and decoding speed (greedy batch RTF, streaming per-chunk latency), all in one process.

Measured, for each encoder (default config, 80-dim fbank input, output_dim 256), interleaved round by round
with the GEMM peak so that a load change on a shared machine hits every figure alike (each figure is the
median over rounds):

* GEMM peak: fp32 GEMMs on the shapes the encoders' own GEMMs have (a batch of 8 x 4 s is 800 frames at 25
  frames/s: LSTM input/recurrent projections, FFN and attention projections), in MKL (``torch.mm``) and in
  oneDNN (the matmul the encoders' linear layers use, ``serac.encoders.cpu_ops``), best shape of the better
  library: on AMD processors MKL does not use its AVX-512 kernels and reaches half of oneDNN's rate;
* encoder train: forward + backward of the encoder on a batch (default 8 utterances x 4 s, dummy loss);
  achieved FLOP/s = 3 x forward FLOPs / step time (backward = 2 x forward, the usual convention);
* transducer train: a whole training step (encoder, stateless decoder, joiner, pruned RNN-T loss with the
  simple loss, backward, Adam step) on the same batch with random transcripts, as seconds of audio per second;
  FLOP/s counts the encoder's FLOPs only (so the ratio shows what the loss and decoder cost on top);
* greedy batch RTF: ``model.encode`` + ``greedy_search_batch`` on the batch, wall / audio time;
* streaming latency: ``streaming_greedy_search`` on one stream in 160 ms chunks (rounded up to the encoder's
  ``chunk_multiple``), per-chunk compute time as a fraction of the chunk's audio length (median and max).

FLOPs are multiply-accumulates x 2 of matmuls, convolutions, attention and LSTMs as counted by
``encoder_flops_per_second`` (elementwise work is not counted). Data loading is not in the step (the features
are in memory; ``bench/bench_features_decode.py`` times feature extraction). Ratios: encoder FLOP/s / LSTM
FLOP/s, and FLOP/s / GEMM peak. Timings are figures, never pass/fail: on a shared machine they move from run
to run; the ratios within one run are the robust figures. Times are CPU seconds of this process (``time.process_time``), not
wall time: on one thread that is the compute time, without the time other processes held the core (it still
includes their effect on the caches).

Usage:
  python bench/bench_encoders.py
  python bench/bench_encoders.py --encoders lstm conformer --rounds 5 --batch 4 --seconds 2
  python bench/bench_encoders.py --no-decode        # training figures only
  python bench/bench_encoders.py --no-decode --compile conformer contextnet   # also their train.compile rows

``--compile ENC ...`` adds a row ``ENC+compile`` for each: the same encoder (same weights) whose training forward
runs through ``torch.compile`` (``serac.train.compile.compile_for_training``, what ``train.compile: true`` does);
its compile time (wall seconds of the warm-up steps, which compile) is printed. Decoding runs eager either way,
so those rows have no decoding figures.

The process lets glibc keep freed memory (``serac.utils.retain_freed_memory``), as training and decoding do;
``SERAC_MALLOC=default`` measures with glibc's defaults (every step's activations page-faulted in anew).
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

from serac.encoders import cpu_ops  # noqa: E402
from serac.encoders.cost import count_parameters, encoder_flops_per_second  # noqa: E402
from serac.train.compile import compile_for_training  # noqa: E402
from serac.transducer.model import build_model  # noqa: E402
from serac.transducer.search import greedy_search_batch, streaming_greedy_search  # noqa: E402
from serac.utils import retain_freed_memory  # noqa: E402

FRAMES_PER_SECOND = 100
# (m, k, n): 800 rows = 8 x 4 s at 25 frames/s; LSTM 320 (x4 gates), conv_rnnt LSTM 384, conformer FFN/attention
# 144, contextnet pointwise 256; and one large square GEMM
GEMM_LIBRARIES = {"mkl": "torch.mm: MKL", "onednn": "oneDNN matmul"}
GEMM_SHAPES = [(800, 320, 1280), (800, 384, 1536), (800, 144, 576), (800, 576, 144), (800, 144, 432),
               (800, 256, 256), (1024, 1024, 1024)]


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds this process spent in ``fn``: on one thread that is the compute time, and unlike wall time it
    does not count the time other processes on a shared machine held the core."""
    start = time.process_time()
    fn()
    return time.process_time() - start


class Gemm:
    """fp32 GEMM of one shape, in MKL (``torch.mm``) and in oneDNN (``serac.encoders.cpu_ops``' matmul, what the
    encoders' linear layers use); ``run`` returns GFLOP/s of each."""

    def __init__(self, m: int, k: int, n: int) -> None:
        self.a, self.b, self.flops = torch.randn(m, k), torch.randn(k, n), 2 * m * k * n
        self.b_t = self.b.t().contiguous()  # (n, k): the weight layout of a linear layer
        self.out = torch.empty(m, n)

    def run(self, repeats: int = 5) -> Dict[str, float]:
        rates = {}
        calls = {"mkl": lambda: torch.mm(self.a, self.b, out=self.out)}
        if cpu_ops.onednn_available():
            calls["onednn"] = lambda: cpu_ops.matmul_t(self.a, self.b_t)
        for library, call in calls.items():
            call()
            rates[library] = self.flops / min(timed(call) for _ in range(repeats)) / 1e9
        return rates


class EncoderBench:
    """One encoder inside a transducer: a training batch, a decoding batch and one stream."""

    def __init__(self, name: str, args: argparse.Namespace, compiled: bool = False) -> None:
        torch.manual_seed(0)
        self.name, self.args, self.compiled = name + ("+compile" if compiled else ""), args, compiled
        self.model = build_model({"encoder": {"name": name, "output_dim": args.output_dim}, "decoder_dim": 256,
                                  "joiner_dim": 256}, args.num_features, args.vocab_size)
        self.encoder = self.model.encoder
        self.compile_seconds = 0.0
        if compiled:
            compile_for_training(self.encoder)
        self.params = count_parameters(self.encoder)
        self.flops_per_second = encoder_flops_per_second(self.encoder, args.num_features)
        frames = int(args.seconds * FRAMES_PER_SECOND)
        self.x = torch.randn(args.batch, frames, args.num_features)
        self.x_lens = torch.full((args.batch,), frames, dtype=torch.long)
        # ~3 tokens per second of audio, like BPE-64 speech
        self.y = [torch.randint(1, args.vocab_size, (int(3 * args.seconds),)).tolist() for _ in range(args.batch)]
        self.audio = args.batch * args.seconds
        self.train_flops = 3 * self.flops_per_second * self.audio
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        chunk = int(args.chunk_ms * FRAMES_PER_SECOND / 1000)
        self.chunk = -(-chunk // self.encoder.chunk_multiple) * self.encoder.chunk_multiple
        num_chunks = max(1, int(args.stream_seconds * FRAMES_PER_SECOND) // self.chunk)
        self.stream = torch.randn(1, num_chunks * self.chunk, args.num_features)
        self.times: Dict[str, List[float]] = {"encoder": [], "transducer": [], "greedy": [], "chunk": []}

    def encoder_step(self) -> None:
        self.model.train()
        self.encoder.zero_grad(set_to_none=True)
        y, _ = self.encoder(self.x, self.x_lens)
        y.pow(2).mean().backward()

    def transducer_step(self) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(self.x, self.x_lens, self.y)
        (0.5 * out["simple_loss"] + out["pruned_loss"]).backward()
        self.optimizer.step()

    @torch.no_grad()
    def greedy(self) -> None:
        self.model.eval()
        enc, enc_lens = self.model.encode(self.x, self.x_lens)
        greedy_search_batch(self.model, enc, enc_lens)

    @torch.no_grad()
    def chunk_times(self) -> List[float]:
        self.model.eval()
        state, times = None, []
        for start in range(0, self.stream.size(1), self.chunk):
            chunk = self.stream[:, start:start + self.chunk]
            begin = time.process_time()
            state = streaming_greedy_search(self.model, chunk, state)
            times.append(time.process_time() - begin)
        return times

    def measure_round(self, decode: bool) -> None:
        self.times["encoder"].append(timed(self.encoder_step))
        self.times["transducer"].append(timed(self.transducer_step))
        if decode:
            self.times["greedy"].append(timed(self.greedy))
            self.times["chunk"].extend(self.chunk_times())

    def warm_up(self, decode: bool) -> None:
        start = time.perf_counter()
        self.encoder_step()
        self.transducer_step()
        self.compile_seconds = time.perf_counter() - start if self.compiled else 0.0
        if decode:
            self.greedy()
            self.chunk_times()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["lstm", "conv_rnnt", "conformer", "contextnet"])
    parser.add_argument("--num-features", type=int, default=80)
    parser.add_argument("--output-dim", type=int, default=256)
    parser.add_argument("--vocab-size", type=int, default=64, help="the main recipe's BPE 64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length of the batch")
    parser.add_argument("--stream-seconds", type=float, default=8.0)
    parser.add_argument("--chunk-ms", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians over them")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-decode", action="store_true", help="skip the decoding figures")
    parser.add_argument("--compile", nargs="*", default=[], metavar="ENC",
                        help="also measure these encoders with their training forward compiled (rows ENC+compile)")
    args = parser.parse_args()
    if "lstm" not in args.encoders:
        args.encoders = ["lstm"] + args.encoders  # the reference every ratio is taken against
    decode = not args.no_decode

    torch.set_num_threads(args.threads)
    retained = retain_freed_memory()  # as the trainer and the decoders do
    print(f"torch {torch.__version__}, threads={args.threads}, batch {args.batch} x {args.seconds:g} s, "
          f"stream {args.stream_seconds:g} s in {args.chunk_ms} ms chunks, median of {args.rounds} interleaved rounds, "
          f"glibc malloc {'keeps freed memory' if retained else 'defaults (SERAC_MALLOC=default or not glibc)'}",
          flush=True)
    gemms = [Gemm(*shape) for shape in GEMM_SHAPES]
    benches = [EncoderBench(name, args) for name in args.encoders]
    benches += [EncoderBench(name, args, compiled=True) for name in args.compile]
    for b in benches:
        b.warm_up(decode and not b.compiled)
        if b.compiled:
            print(f"  {b.name}: warm-up (compiling) took {b.compile_seconds:.0f} s wall", flush=True)
    gemm_rates: List[Dict[str, List[float]]] = [{} for _ in gemms]
    for r in range(args.rounds):
        for g, rates in zip(gemms, gemm_rates):
            for library, rate in g.run().items():
                rates.setdefault(library, []).append(rate)
        for b in benches:
            b.measure_round(decode and not b.compiled)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)

    peaks = {}
    for library in gemm_rates[0]:
        medians = [statistics.median(rates[library]) for rates in gemm_rates]
        peaks[library] = max(medians)
        print(f"\nfp32 GEMM ({GEMM_LIBRARIES[library]}, one shape at a time), GFLOP/s: " + ", ".join(
            f"{m}x{k}x{n} {rate:.1f}" for (m, k, n), rate in zip(GEMM_SHAPES, medians))
            + f"; peak {peaks[library]:.1f}")
    peak = max(peaks.values())
    print(f"GEMM peak (the better library's): {peak:.1f} GFLOP/s"
          + (f"; oneDNN / MKL {peaks['onednn'] / peaks['mkl']:.2f}" if "onednn" in peaks else "")
          + (" (the encoders' linear layers run in oneDNN: SERAC_CPU_OPS unset)" if cpu_ops.enabled()
             else " (SERAC_CPU_OPS=aten: the encoders' linear layers run in MKL)"))

    rows = {}
    for b in benches:
        med = {k: statistics.median(v) for k, v in b.times.items() if v}
        row = dict(params=b.params, gflops=b.flops_per_second / 1e9,
                   enc_rate=b.train_flops / med["encoder"] / 1e9, enc_tput=b.audio / med["encoder"],
                   full_rate=b.train_flops / med["transducer"] / 1e9, full_tput=b.audio / med["transducer"])
        if decode and not b.compiled:
            chunk_s = b.chunk / FRAMES_PER_SECOND
            row.update(greedy_rtf=med["greedy"] / b.audio, chunk_ms=b.chunk * 1000 // FRAMES_PER_SECOND,
                       chunk_lat=med["chunk"] / chunk_s, chunk_lat_max=max(b.times["chunk"]) / chunk_s,
                       dec_rate=b.flops_per_second * b.audio / med["greedy"] / 1e9)
        rows[b.name] = row
    ref = rows["lstm"]

    print("\nTraining (fwd+bwd), one thread")
    header = (f"{'encoder':<18} {'params':>7} {'GFLOPs/s audio':>14} {'enc GFLOP/s':>11} {'x lstm':>6} {'/ peak':>6} "
              f"{'enc s/s':>7} {'step s/s':>8} {'x lstm':>6} {'step GFLOP/s':>12} {'x lstm':>6}")
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(f"{name:<18} {r['params'] / 1e6:6.2f}M {r['gflops']:14.3f} {r['enc_rate']:11.1f} "
              f"{r['enc_rate'] / ref['enc_rate']:6.2f} {r['enc_rate'] / peak:6.2f} {r['enc_tput']:7.1f} "
              f"{r['full_tput']:8.1f} {r['full_tput'] / ref['full_tput']:6.2f} {r['full_rate']:12.1f} "
              f"{r['full_rate'] / ref['full_rate']:6.2f}")
    print("enc: encoder forward+backward (3 x forward FLOPs / time); step: the whole transducer training step "
          "(loss, decoder, Adam), FLOP/s of the encoder's FLOPs; s/s: seconds of audio per second.")
    if decode:
        print("\nDecoding (no grad), one thread")
        header = (f"{'encoder':<11} {'greedy RTF':>10} {'x lstm':>6} {'enc GFLOP/s':>11} {'/ peak':>6} {'chunk':>6} "
                  f"{'chunk latency':>13} {'x lstm':>6} {'max':>6}")
        print(header)
        print("-" * len(header))
        for name, r in rows.items():
            if "greedy_rtf" not in r:
                continue  # a compiled row: decoding is eager
            print(f"{name:<11} {r['greedy_rtf']:10.4f} {r['greedy_rtf'] / ref['greedy_rtf']:6.2f} "
                  f"{r['dec_rate']:11.1f} {r['dec_rate'] / peak:6.2f} {r['chunk_ms']:4d}ms "
                  f"{r['chunk_lat']:13.4f} {r['chunk_lat'] / ref['chunk_lat']:6.2f} {r['chunk_lat_max']:6.3f}")
        print("greedy RTF: encode + greedy search of the batch, CPU / audio time (enc GFLOP/s: encoder FLOPs / that "
              "time); chunk latency: streaming encoder + greedy search time per chunk / chunk length (median, max).")


if __name__ == "__main__":
    main()
