#!/usr/bin/env python3
"""sherpa-onnx vs serac's own decoding of one trained model, one thread, one utterance at a time: real-time factor
offline and streaming, and the compute time of each streaming chunk. Prints figures and ratios.

Usage (in a recipe directory, after training; exports into --work-dir unless it holds an export already):
  cd egs/yesno/asr && ../../../.venv/bin/python ../../../bench/bench_sherpa.py --exp-dir exp/lstm \
      --lang-dir data/lang_word --epoch 100 --avg 10 --cuts data/fbank/yesno_cuts_test.jsonl.gz --sample-rate 8000
  cd egs/synth_assistant/asr && ../../../.venv/bin/python ../../../bench/bench_sherpa.py --exp-dir exp/lstm \
      --lang-dir data/lang_bpe_64 --epoch 15 --avg 5 --cuts data/fbank/synth_cuts_test.jsonl.gz --max-utts 100

What is timed: serac offline = encoder + greedy search on the stored features (fbank not included); serac streaming
= serac.bin.decode_streaming's per-chunk calls (features not included); sherpa-onnx = decode_stream on the audio,
its fbank included (sherpa-onnx computes features inside). Streaming chunk: --chunk-frames feature frames.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--cuts", required=True, help="cuts with features (serac) and audio (sherpa-onnx)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--chunk-frames", type=int, default=16)
    p.add_argument("--max-utts", type=int, default=0, help="0: all")
    p.add_argument("--work-dir", help="where the exports go (default: <exp-dir>/sherpa-onnx-bench)")
    args = p.parse_args()

    import torch
    from lhotse import load_manifest

    from serac.export.onnx_export import export_offline, export_streaming, load_averaged_model
    from serac.decode.results import latency_summary
    from serac.decode.streaming import decode_cuts_streaming
    from serac.export.sherpa import decode_offline, decode_online, load_sherpa_model, make_recognizer
    from serac.transducer.search import greedy_search_batch

    torch.set_num_threads(1)
    model, tokenizer, _ = load_averaged_model(args.exp_dir, args.lang_dir, args.epoch, args.avg)
    cuts = load_manifest(args.cuts)
    if args.max_utts:
        cuts = cuts.subset(first=args.max_utts)
    work = Path(args.work_dir or Path(args.exp_dir) / "sherpa-onnx-bench")
    if not (work / "offline/tokens.txt").is_file():
        export_offline(model, tokenizer, work / "offline", sample_rate=args.sample_rate)
    if not (work / "streaming/tokens.txt").is_file():
        export_streaming(model, tokenizer, work / "streaming", args.chunk_frames, sample_rate=args.sample_rate)
    audio_s = sum(c.duration for c in cuts)

    # serac offline: one utterance at a time, encoder + greedy search
    serac_off = 0.0
    with torch.no_grad():
        for cut in cuts:
            feats = torch.from_numpy(cut.load_features())[None]
            t0 = time.perf_counter()
            enc, lens = model.encode(feats, torch.tensor([feats.size(1)]))
            greedy_search_batch(model, enc, lens)
            serac_off += time.perf_counter() - t0
    _, raw = decode_cuts_streaming(model, tokenizer, cuts, args.cuts, args.chunk_frames)
    serac_on, serac_chunks = raw["compute_seconds"], raw["chunk_compute_ms_all"]

    offline = load_sherpa_model(work / "offline")
    online = load_sherpa_model(work / "streaming")
    _, sherpa_off = decode_offline(make_recognizer(offline, num_threads=1), offline, cuts)
    _, sherpa_on = decode_online(make_recognizer(online, num_threads=1), online, cuts)

    print(f"model: {args.exp_dir} epoch {args.epoch} avg {args.avg} ({type(model.encoder).__name__}, sherpa-onnx "
          f"type {online.metadata['model_type']}); {len(cuts)} utterances, {audio_s:.1f} s of audio; 1 thread")
    print(f"{'':28s}{'RTF':>10s}{'sherpa/serac':>14s}")
    print(f"{'offline  serac':28s}{serac_off / audio_s:10.4f}")
    print(f"{'offline  sherpa-onnx':28s}{sherpa_off.compute_seconds / audio_s:10.4f}"
          f"{sherpa_off.compute_seconds / serac_off:14.2f}")
    print(f"{'streaming serac':28s}{serac_on / audio_s:10.4f}")
    print(f"{'streaming sherpa-onnx':28s}{sherpa_on.compute_seconds / audio_s:10.4f}"
          f"{sherpa_on.compute_seconds / serac_on:14.2f}")
    for name, chunks in (("serac", serac_chunks), ("sherpa-onnx", [1000.0 * s for s in sherpa_on.chunk_seconds])):
        lat = latency_summary(chunks)
        print(f"chunk of {args.chunk_frames * 10} ms, {name:11s}: compute ms mean {lat['mean']:.3f} p50 {lat['p50']:.3f} "
              f"p90 {lat['p90']:.3f} p99 {lat['p99']:.3f} ({lat['num_chunks']} chunks)")


if __name__ == "__main__":
    main()
