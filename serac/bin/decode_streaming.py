#!/usr/bin/env python3
"""Streaming decode: feed each utterance's features chunk by chunk through the encoder's ``streaming_forward``
(state carried between chunks) and extend greedy hypotheses after every chunk, as a live recogniser would.
Reports WER (the same recogs/errs/wer-summary files as ``serac.bin.decode``, so ``steps/score_cohorts.sh``
works on them), the real-time factor, the compute time per chunk and the algorithmic latency.

Usage:
  python -m serac.bin.decode_streaming --exp-dir exp/lstm --lang-dir data/lang_bpe_256 --epoch 30 --avg 5 \
      --cuts data/fbank/synth_cuts_test.jsonl.gz --set-name test --chunk-ms 160
  python -m serac.bin.decode_streaming ... --chunk-frames 32          # the chunk in feature frames instead
  # one shard of N (steps/decode_streaming.sh --nj N runs these as a job array, then merges):
  python -m serac.bin.decode_streaming ... --num-shards 3 --shard 2

Writes to <exp-dir>/decode/<set-name>/ (or --out-dir), with <suffix> = streaming_greedy_search-chunk-160ms-epoch-30-avg-5:
  recogs-<set>-<suffix>.txt, errs-<set>-<suffix>.txt, wer-summary-<set>-<suffix>.txt, stats-<set>-<suffix>.json
  streaming-summary-<set>-<suffix>.txt   WER, RTF, chunk / look-ahead / algorithmic latency, compute ms per chunk

One stream at a time (batch 1, ``--num-threads`` threads, 1 by default): the per-chunk compute time is what one
user's recogniser spends after each chunk arrives. Definitions:

* chunk compute time: wall time of one ``streaming_greedy_search`` call (feature normalisation, encoder chunk,
  greedy search over its frames), over full-size chunks only (an utterance's shorter last chunk would pull the
  percentiles down); mean / p50 / p90 / p99 in ms.
* RTF: the summed compute time of every chunk (last ones included) / audio duration. Reading features from disk
  is not counted (``stats[wall_seconds]`` has the total).
* algorithmic latency: measured, not declared. When a chunk returns encoder frames ``i0..i1``, frame ``i0``
  covers input frames from ``subsampling_factor * i0``; the time between the start of that input frame and the
  end of the input received so far is its wait. The maximum over all chunks is reported (in ms of feature
  frames, without the fbank window). For serac's encoders the look-ahead lies inside the chunk (a chunk is a
  multiple of ``chunk_multiple`` > ``look_ahead``), so this equals the chunk duration; an encoder that held
  frames back for more right context would show it here.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from serac.bin.decode import load_model, shard_of, start_job, write_results
from serac.data.tokenizer import Tokenizer
from serac.scoring.wer import store_transcripts
from serac.transducer.model import Transducer
from serac.transducer.search import streaming_greedy_search
from serac.utils import atomic_write_text, setup_logging

METHOD = "streaming_greedy_search"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1, help="average the last N epochs ending at --epoch")
    p.add_argument("--cuts", required=True)
    p.add_argument("--set-name", required=True)
    chunk = p.add_mutually_exclusive_group()
    chunk.add_argument("--chunk-ms", type=float, help="chunk duration in ms (default 160)")
    chunk.add_argument("--chunk-frames", type=int, help="chunk length in feature frames")
    p.add_argument("--out-dir", help="default: <exp-dir>/decode/<set-name>")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard", type=int, default=1, help="1-based shard index")
    p.add_argument("--num-threads", type=int, default=1)
    return p


def format_ms(ms: float) -> str:
    """160.0 -> '160', 12.5 -> '12.5' (the suffix steps/decode_streaming.sh computes from --chunk-ms)."""
    return f"{ms:g}"


def streaming_suffix(chunk_ms: float, epoch: int, avg: int) -> str:
    return f"{METHOD}-chunk-{format_ms(chunk_ms)}ms-epoch-{epoch}-avg-{avg}"


def resolve_chunk_frames(chunk_ms: Optional[float], chunk_frames: Optional[int], frame_shift_s: float,
                         chunk_multiple: int, where: str) -> int:
    """The chunk in feature frames, checked against the encoder: a positive multiple of ``chunk_multiple``.
    ``where`` names the model (and cut) in the error message."""
    if chunk_frames is None:
        ms = 160.0 if chunk_ms is None else chunk_ms
        frames = ms / (1000.0 * frame_shift_s)
        if ms <= 0 or abs(frames - round(frames)) > 1e-6:
            raise ValueError(f"{where}: --chunk-ms {format_ms(ms)} is not a positive whole number of "
                             f"{format_ms(1000 * frame_shift_s)} ms feature frames")
        chunk_frames = int(round(frames))
    if chunk_frames <= 0 or chunk_frames % chunk_multiple:
        raise ValueError(f"{where}: a chunk of {chunk_frames} feature frames "
                         f"({format_ms(chunk_frames * frame_shift_s * 1000)} ms) is not a positive multiple of the "
                         f"encoder's chunk_multiple ({chunk_multiple} frames = "
                         f"{format_ms(chunk_multiple * frame_shift_s * 1000)} ms)")
    return chunk_frames


@dataclass
class StreamedUtterance:
    tokens: List[int]
    full_chunk_seconds: List[float] = field(default_factory=list)  # compute time of each full-size chunk
    compute_seconds: float = 0.0  # every chunk, the last partial one included
    max_wait_frames: int = 0  # algorithmic latency in feature frames (see the module docstring)


@torch.no_grad()
def stream_utterance(model: Transducer, feats: torch.Tensor, chunk_frames: int) -> StreamedUtterance:
    """Decode one utterance's features (T, F) chunk by chunk. The tail that does not fill a chunk goes in as the
    stream's final chunk, cut to a multiple of the subsampling factor as ``forward`` cuts it, so the transcript
    equals offline greedy search on ``model.encode`` of the whole utterance (up to float rounding)."""
    encoder = model.encoder
    factor = encoder.subsampling_factor
    total = feats.size(0)
    usable = total - total % factor
    x = feats.unsqueeze(0)
    out = StreamedUtterance(tokens=[])
    state = None
    start = 0
    while start < usable:
        end = min(start + chunk_frames, usable)
        final = end - start < chunk_frames
        emitted_before = state.num_encoder_frames if state is not None else 0
        t0 = time.perf_counter()
        state = streaming_greedy_search(model, x[:, start:end], state, final=final)
        elapsed = time.perf_counter() - t0
        out.compute_seconds += elapsed
        if not final:
            out.full_chunk_seconds.append(elapsed)
        if state.num_encoder_frames > emitted_before:
            out.max_wait_frames = max(out.max_wait_frames, end - factor * emitted_before)
        start = end
    out.tokens = state.hyps[0] if state is not None else []
    return out


def latency_summary(chunk_ms: Sequence[float]) -> Dict[str, Any]:
    """mean / p50 / p90 / p99 of per-chunk compute times (ms)."""
    if len(chunk_ms) == 0:
        return {"num_chunks": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    a = np.asarray(chunk_ms, dtype=np.float64)
    return {"num_chunks": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99))}


def merge_streaming_stats(shards: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Combine per-shard stats (each with its raw per-chunk times) into the stats of one whole decode."""
    merged = dict(shards[-1])
    chunk_ms = [ms for s in shards for ms in s["chunk_compute_ms_all"]]
    for key in ("audio_seconds", "compute_seconds", "wall_seconds", "num_utts"):
        merged[key] = sum(s[key] for s in shards)
    merged["algorithmic_latency_ms"] = max(s["algorithmic_latency_ms"] for s in shards)
    merged["rtf"] = merged["compute_seconds"] / max(merged["audio_seconds"], 1e-9)
    merged["chunk_compute_ms"] = latency_summary(chunk_ms)
    merged["num_shards"] = len(shards)
    merged.pop("chunk_compute_ms_all", None)
    return merged


def write_streaming_results(out_dir: Path, set_name: str, suffix: str, results, stats: Dict[str, Any]
                            ) -> Dict[str, Any]:
    """The files of serac.bin.decode (recogs, errs, wer-summary, stats json) plus streaming-summary-*.txt."""
    stats = write_results(out_dir, set_name, suffix, results, stats)
    lat = stats["chunk_compute_ms"]

    def f(x: Optional[float], digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    rows = [("set", set_name), ("decoding", suffix), ("encoder", stats["encoder"]),
            ("WER %", f"{stats['wer']:.2f}"), ("utterances", str(stats["num_utts"])),
            ("audio seconds", f"{stats['audio_seconds']:.2f}"),
            (f"RTF ({stats['num_threads']} thread{'s' if stats['num_threads'] > 1 else ''}, batch 1)",
             f(stats["rtf"], 4)),
            ("chunk ms", format_ms(stats["chunk_ms"])), ("chunk frames", str(stats["chunk_frames"])),
            ("encoder look-ahead ms", format_ms(stats["look_ahead_ms"])),
            ("algorithmic latency ms (measured)", format_ms(stats["algorithmic_latency_ms"])),
            ("full chunks", str(lat["num_chunks"])),
            ("chunk compute ms mean", f(lat["mean"])), ("chunk compute ms p50", f(lat["p50"])),
            ("chunk compute ms p90", f(lat["p90"])), ("chunk compute ms p99", f(lat["p99"]))]
    atomic_write_text(out_dir / f"streaming-summary-{set_name}-{suffix}.txt",
                      "".join(f"{k}\t{v}\n" for k, v in rows))
    logging.info(f"{set_name} {suffix}: RTF {f(stats['rtf'], 4)}, chunk compute ms mean {f(lat['mean'])} "
                 f"p50 {f(lat['p50'])} p90 {f(lat['p90'])} p99 {f(lat['p99'])}, algorithmic latency "
                 f"{format_ms(stats['algorithmic_latency_ms'])} ms")
    return stats


def decode_cuts_streaming(model: Transducer, tokenizer: Tokenizer, cuts, cuts_path: str, chunk_frames: int
                          ) -> Tuple[List[Tuple[str, List[str], List[str]]], Dict[str, Any]]:
    """Stream every cut (batch 1). Returns (results, raw stats with the per-chunk times in ms)."""
    num_features = int(model.feat_mean.numel())
    results = []
    chunk_ms_all: List[float] = []
    audio_s = compute_s = 0.0
    max_wait = 0
    t_start = time.time()
    for cut in cuts:
        if not cut.has_features:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no features (did the fbank stage run?)")
        if not cut.supervisions:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no supervision (no reference text)")
        feats = torch.from_numpy(cut.load_features())
        if feats.ndim != 2 or feats.size(1) != num_features:
            raise ValueError(f"{cuts_path}: cut {cut.id} has features of shape {tuple(feats.shape)}; the model "
                             f"expects (frames, {num_features})")
        streamed = stream_utterance(model, feats, chunk_frames)
        results.append((cut.id, (cut.supervisions[0].text or "").split(), tokenizer.decode(streamed.tokens).split()))
        chunk_ms_all.extend(1000.0 * s for s in streamed.full_chunk_seconds)
        compute_s += streamed.compute_seconds
        audio_s += cut.duration
        max_wait = max(max_wait, streamed.max_wait_frames)
    return results, {"audio_seconds": audio_s, "compute_seconds": compute_s, "wall_seconds": time.time() - t_start,
                     "max_wait_frames": max_wait, "chunk_compute_ms_all": chunk_ms_all}


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    exp_dir, out_dir, cuts, first = start_job(args)
    model, tokenizer, _ = load_model(exp_dir, Path(args.lang_dir), args.epoch, args.avg, first.num_features)
    encoder = model.encoder
    frame_shift = float(first.frame_shift)
    try:
        chunk_frames = resolve_chunk_frames(args.chunk_ms, args.chunk_frames, frame_shift, encoder.chunk_multiple,
                                            f"{exp_dir} ({type(encoder).__name__})")
    except ValueError as e:
        raise SystemExit(str(e))
    chunk_ms = chunk_frames * frame_shift * 1000.0
    suffix = streaming_suffix(chunk_ms, args.epoch, args.avg)
    cuts = shard_of(cuts, args.shard, args.num_shards)
    logging.info(f"streaming {args.cuts} through {type(encoder).__name__} in chunks of {chunk_frames} frames "
                 f"({format_ms(chunk_ms)} ms; chunk_multiple {encoder.chunk_multiple}, look_ahead "
                 f"{encoder.look_ahead} frames), {args.num_threads} thread(s)")
    try:
        results, raw = decode_cuts_streaming(model, tokenizer, cuts, args.cuts, chunk_frames)
    except ValueError as e:
        raise SystemExit(str(e))
    stats = {"method": METHOD, "encoder": getattr(encoder, "registry_name", type(encoder).__name__),
             "epoch": args.epoch, "avg": args.avg, "num_threads": args.num_threads, "num_utts": len(results),
             "chunk_frames": chunk_frames, "chunk_ms": chunk_ms, "frame_shift_ms": frame_shift * 1000.0,
             "chunk_multiple": encoder.chunk_multiple, "look_ahead_ms": encoder.look_ahead * frame_shift * 1000.0,
             "audio_seconds": raw["audio_seconds"], "compute_seconds": raw["compute_seconds"],
             "wall_seconds": raw["wall_seconds"], "algorithmic_latency_ms": raw["max_wait_frames"] * frame_shift * 1000.0,
             "chunk_compute_ms_all": raw["chunk_compute_ms_all"]}
    if args.num_shards > 1:
        out_dir.mkdir(parents=True, exist_ok=True)
        store_transcripts(out_dir / f"recogs-{args.set_name}-{suffix}.shard-{args.shard}.txt", results)
        atomic_write_text(out_dir / f"stats-{args.set_name}-{suffix}.shard-{args.shard}.json", json.dumps(stats) + "\n")
        logging.info(f"shard {args.shard}/{args.num_shards}: {len(results)} utterances")
        return
    write_streaming_results(out_dir, args.set_name, suffix, results, merge_streaming_stats([stats]))


if __name__ == "__main__":
    main()
