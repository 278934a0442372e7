#!/usr/bin/env python3
"""Feature extraction speed (kaldifeat vs lhotse's own Fbank) and decoding real-time factor (greedy and modified
beam search) on the built-in synthetic corpus, printed as figures and ratios.

Usage:
  python bench/bench_features_decode.py                      # generates a small sample; random-init model
  python bench/bench_features_decode.py --cuts egs/synth_assistant/asr/data/fbank/synth_cuts_test.jsonl.gz \
      --exp-dir egs/synth_assistant/asr/exp/lstm --lang-dir egs/synth_assistant/asr/data/lang_bpe_256 --epoch 12 --avg 4
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sample_cuts(tmp: Path, num_speakers: int):
    from lhotse import CutSet, load_manifest

    generate = [sys.executable, "-m", "serac.bin.generate_synth_corpus", "--out-dir", str(tmp / "synth"),
                "--num-speakers", str(num_speakers), "--utts-per-speaker", "5", "--dev-speakers", "1",
                "--test-speakers", "1", "--min-test-speakers-per-accent", "0", "--adapt-speakers-per-region", "0",
                "--eval-utts-per-speaker", "1", "--nj", "1"]
    for step in (["--job", "1"], ["--merge", "--manifest-dir", str(tmp / "manifests")]):
        subprocess.run(generate + step, check=True, cwd=ROOT, capture_output=True)
    m = tmp / "manifests"
    return CutSet.from_manifests(recordings=load_manifest(m / "synth_recordings_train.jsonl.gz"),
                                 supervisions=load_manifest(m / "synth_supervisions_train.jsonl.gz")).to_eager()


def time_features(cuts, backend: str, repeats: int) -> float:
    import numpy as np

    from serac.data.features import make_fbank_extractor

    extractor = make_fbank_extractor(80, 16000, backend)
    audio = [c.load_audio() for c in cuts]  # decode once: time the features, not FLAC decoding
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a in audio:
            extractor.extract(np.asarray(a), 16000)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", help="cuts with features for the decoding benchmark (default: a generated sample)")
    p.add_argument("--exp-dir")
    p.add_argument("--lang-dir")
    p.add_argument("--epoch", type=int)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--num-speakers", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beam", type=int, default=4)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    from serac.data.features import kaldifeat_available

    with tempfile.TemporaryDirectory() as tmp:
        cuts = sample_cuts(Path(tmp), args.num_speakers)
        audio_s = sum(c.duration for c in cuts)
        print(f"feature extraction: {len(cuts)} utterances, {audio_s:.1f} s of 16 kHz audio, 80 bins, 1 thread")
        res = {}
        for backend in (["kaldifeat"] if kaldifeat_available() else []) + ["lhotse"]:
            res[backend] = time_features(cuts, backend, args.repeats)
            print(f"  {backend:9s} {res[backend]:.3f} s  = {audio_s / res[backend]:.0f}x real time")
        if "kaldifeat" in res:
            print(f"  ratio lhotse/kaldifeat time: {res['lhotse'] / res['kaldifeat']:.2f}x")
        else:
            print("  kaldifeat not importable: no ratio")

        from serac.data.dataset import load_cuts
        from serac.transducer.search import greedy_search_batch, modified_beam_search

        if args.exp_dir:
            from serac.decode.job import load_model

            dcuts = load_cuts(args.cuts)
            first = next(iter(dcuts))
            model, _, _ = load_model(Path(args.exp_dir), Path(args.lang_dir), args.epoch, args.avg,
                                     first.num_features)
            what = f"{args.exp_dir} epoch {args.epoch} avg {args.avg}"
        else:
            from serac.config import load_config
            from serac.data.features import compute_fbank
            from serac.transducer.model import build_model

            dcuts = compute_fbank(cuts, Path(tmp) / "feats", num_mel_bins=80).to_eager()
            cfg = load_config(ROOT / "egs/synth_assistant/asr/conf/lstm.yaml")
            model = build_model(cfg["model"], 80, 256).eval()
            what = "randomly initialised model of egs/synth_assistant/asr/conf/lstm.yaml (pass --exp-dir for a trained one)"
        print(f"decoding: {what}, batch of all cuts, 1 thread")
        from serac.data.dataset import eval_dataloader

        rows = {}
        for method in ("greedy_search", "modified_beam_search"):
            audio, spent = 0.0, 0.0
            with torch.no_grad():
                for batch in eval_dataloader(dcuts, 300.0):
                    t0 = time.perf_counter()
                    enc, lens = model.encode(batch["inputs"], batch["supervisions"]["num_frames"])
                    if method == "greedy_search":
                        greedy_search_batch(model, enc, lens)
                    else:
                        modified_beam_search(model, enc, lens, beam=args.beam)
                    spent += time.perf_counter() - t0
                    audio += sum(c.duration for c in batch["supervisions"]["cut"])
            rows[method] = spent / audio
            print(f"  {method:22s} RTF {rows[method]:.4f}  ({audio:.0f} s audio)")
        print(f"  ratio beam/greedy RTF: {rows['modified_beam_search'] / rows['greedy_search']:.2f}x")


if __name__ == "__main__":
    main()
