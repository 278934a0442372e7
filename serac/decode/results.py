"""A decode's result files (icefall's formats) and reading them back.

Under ``<exp-dir>/decode/<set>/``, for one decode named by its suffix (:mod:`serac.decode.naming`):

* ``recogs-<set>-<suffix>.txt``       references and hypotheses per cut (:func:`serac.scoring.wer.store_transcripts`)
* ``errs-<set>-<suffix>.txt``         sclite-aligned errors per utterance and per word
* ``wer-summary-<set>-<suffix>.txt``  ``settings<TAB>WER`` and one row
* ``stats-<set>-<suffix>.json``       WER counts plus how the decode ran (method, epoch, threads, RTF, ...)
* ``compute-<set>-<suffix>.tsv``      per utterance executed encoder FLOPs (encoders that count them)
* ``streaming-summary-<set>-<suffix>.txt``  streaming decodes: WER, RTF, chunk, latency, compute ms per chunk
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from serac.scoring.wer import Result, store_transcripts, write_error_stats, write_wer_summary
from serac.decode.naming import format_ms
from serac.utils import atomic_write_text, format_number


def result_path(out_dir: Path, kind: str, set_name: str, suffix: str, ext: str = "txt") -> Path:
    """``<out_dir>/<kind>-<set>-<suffix>.<ext>``, e.g. kind ``recogs``, ``errs``, ``wer-summary``, ``stats``."""
    return Path(out_dir) / f"{kind}-{set_name}-{suffix}.{ext}"


def write_results(out_dir: Path, set_name: str, suffix: str, results: Sequence[Result], stats: dict) -> dict:
    """Write recogs, errs, wer-summary and stats of one whole decode; returns the stats with the WER counts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store_transcripts(result_path(out_dir, "recogs", set_name, suffix), results)
    wer = write_error_stats(result_path(out_dir, "errs", set_name, suffix), f"{set_name}-{suffix}", results)
    write_wer_summary(result_path(out_dir, "wer-summary", set_name, suffix), {suffix: wer["wer"]})
    stats = {**stats, **wer}
    atomic_write_text(result_path(out_dir, "stats", set_name, suffix, "json"), json.dumps(stats, indent=2) + "\n")
    logging.info(f"{set_name} {suffix}: WER {wer['wer']:.2f}% [{wer['errs']} / {wer['words']}, {wer['ins']} ins, "
                 f"{wer['del']} del, {wer['sub']} sub]")
    logging.info(f"wrote {result_path(out_dir, 'recogs', set_name, suffix)}")
    return stats


def write_compute(path: Path, rows: List[Tuple[Any, ...]]) -> Dict[str, float]:
    """Per-utterance executed encoder FLOPs (TSV, sorted by cut id); returns the set's totals and fraction. Rows are
    (cut_id, frames, flops, dense_flops[, modules]); ``modules``, when the encoder reports it, is per block [MHA
    frames, FFN frames], the frames each module ran on: columns ``mha_frames`` and ``ffn_frames`` (per block,
    space-separated)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    modules = bool(rows) and all(len(r) > 4 and r[4] is not None for r in rows)
    lines = ["cut_id\tframes\tflops\tdense_flops\tflop_fraction" + ("\tmha_frames\tffn_frames" if modules else "")]
    for r in sorted(rows, key=lambda r: r[0]):
        c, n, f, d = r[:4]
        line = f"{c}\t{n}\t{f:.0f}\t{d:.0f}\t{f / max(d, 1.0):.4f}"
        if modules:
            line += "\t" + " ".join(str(b[0]) for b in r[4]) + "\t" + " ".join(str(b[1]) for b in r[4])
        lines.append(line)
    atomic_write_text(path, "\n".join(lines) + "\n")
    flops, dense = sum(r[2] for r in rows), sum(r[3] for r in rows)
    return {"encoder_flops": flops, "encoder_dense_flops": dense, "flop_fraction": flops / max(dense, 1.0)}


def read_summary_wer(path: Path) -> float:
    """The WER of a ``wer-summary-*.txt`` file."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if len(lines) < 2 or lines[0].split("\t") != ["settings", "WER"]:
        raise ValueError(f"{path}: not a wer-summary file")
    return float(lines[1].split("\t")[1])


def latency_summary(chunk_ms: Sequence[float]) -> Dict[str, Any]:
    """mean / p50 / p90 / p99 of per-chunk compute times (ms)."""
    if len(chunk_ms) == 0:
        return {"num_chunks": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    a = np.asarray(chunk_ms, dtype=np.float64)
    return {"num_chunks": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99))}


def merge_streaming_stats(shards: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Combine per-shard streaming stats (each with its raw per-chunk times) into the stats of one whole decode."""
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


def write_streaming_results(out_dir: Path, set_name: str, suffix: str, results: Sequence[Result],
                            stats: Dict[str, Any]) -> Dict[str, Any]:
    """The files of :func:`write_results` plus ``streaming-summary-<set>-<suffix>.txt``."""
    stats = write_results(out_dir, set_name, suffix, results, stats)
    lat = stats["chunk_compute_ms"]

    def f(x: Optional[float], digits: int = 3) -> str:
        return format_number(x, digits)

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
    atomic_write_text(Path(out_dir) / f"streaming-summary-{set_name}-{suffix}.txt",
                      "".join(f"{k}\t{v}\n" for k, v in rows))
    logging.info(f"{set_name} {suffix}: RTF {f(stats['rtf'], 4)}, chunk compute ms mean {f(lat['mean'])} "
                 f"p50 {f(lat['p50'])} p90 {f(lat['p90'])} p99 {f(lat['p99'])}, algorithmic latency "
                 f"{format_ms(stats['algorithmic_latency_ms'])} ms")
    return stats
