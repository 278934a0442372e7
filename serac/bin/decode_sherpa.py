#!/usr/bin/env python3
"""Decode a cuts manifest with an exported model in sherpa-onnx (greedy search, from the audio: sherpa-onnx computes
the features itself) and write serac's icefall-format results with a ``sherpa-`` suffix.

Usage:
  python -m serac.bin.decode_sherpa --model-dir exp/lstm/sherpa-onnx-epoch-60-avg-10/offline --epoch 60 --avg 10 \
      --cuts data/fbank/yesno_cuts_test.jsonl.gz --set-name test --out-dir exp/lstm/decode/test
  python -m serac.bin.decode_sherpa --model-dir exp/lstm/sherpa-onnx-epoch-60-avg-10/streaming ...

Writes recogs-<set>-<suffix>.txt, errs-, wer-summary- and stats- with <suffix> =
  sherpa-greedy_search-epoch-60-avg-10                              (offline model)
  sherpa-streaming_greedy_search-chunk-160ms-epoch-60-avg-10         (streaming model; the chunk from its metadata)
--epoch/--avg only name the results (they should be those the model was exported from).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import load_manifest_lazy

from serac.decode.naming import decode_suffix, streaming_suffix
from serac.decode.results import latency_summary, write_results
from serac.export.sherpa import decode_offline, decode_online, load_sherpa_model, make_recognizer
from serac.utils import setup_logging


def sherpa_suffix(model, epoch: int, avg: int) -> str:
    if model.streaming:
        return "sherpa-" + streaming_suffix(int(model.metadata["decode_chunk_len"]) * 10.0, epoch, avg)
    return "sherpa-" + decode_suffix("greedy_search", epoch, avg, beam=4)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="encoder.onnx, decoder.onnx, joiner.onnx, tokens.txt")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--cuts", required=True)
    p.add_argument("--set-name", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--force", action="store_true", help="decode even if the wer-summary exists")
    p.add_argument("--tail-padding", type=float, help="streaming: seconds of silence after each utterance "
                                                     "(default: enough for sherpa-onnx to decode every frame)")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    model = load_sherpa_model(args.model_dir)
    suffix = sherpa_suffix(model, args.epoch, args.avg)
    summary = Path(args.out_dir) / f"wer-summary-{args.set_name}-{suffix}.txt"
    if summary.is_file() and not args.force:
        logging.info(f"{summary} exists, skipping (--force to redo)")
        return
    recognizer = make_recognizer(model, num_threads=args.num_threads)
    cuts = load_manifest_lazy(args.cuts)
    try:
        if model.streaming:
            results, raw = decode_online(recognizer, model, cuts, args.cuts, args.tail_padding)
        else:
            results, raw = decode_offline(recognizer, model, cuts, args.cuts)
    except ValueError as e:
        raise SystemExit(str(e))
    if not results:
        raise SystemExit(f"{args.cuts}: no cuts")
    stats = {**raw.as_dict(), "method": suffix.split("-epoch-")[0], "epoch": args.epoch, "avg": args.avg,
             "num_threads": args.num_threads, "num_utts": len(results), "model_dir": str(args.model_dir),
             "sherpa_model_type": model.metadata.get("model_type", "offline transducer")}
    if model.streaming:
        stats["chunk_compute_ms"] = latency_summary([1000.0 * s for s in raw.chunk_seconds])
    write_results(Path(args.out_dir), args.set_name, suffix, results, stats)
    logging.info(f"{args.set_name} {suffix}: RTF {stats['rtf']:.4f} ({args.num_threads} thread(s))")


if __name__ == "__main__":
    main()
