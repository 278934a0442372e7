#!/usr/bin/env python3
"""Speed of the synthetic corpus generator, in x real time per core, split into stages.

Usage:
  PYTHONPATH=. python bench/bench_synth_generation.py              # 300 utterances, default config
  PYTHONPATH=. python bench/bench_synth_generation.py --utts 1000 --format wav

Takes utterances of speakers spread over all splits of the default corpus (seed 1), renders them
in this process and writes them to a temporary directory. Stages:
  synthesis  espeak-ng (forked helper) + resampling to 16 kHz + silence trimming
  acoustics  padding, reverberation, noise, telephone channel, gain and int16 conversion
  writing    FLAC/WAV encoding and the atomic file write
Also prints the mean utterance duration (the constant behind --hours) and the projected
generation time of the default corpus. One-off start-up costs (imports, zip tables, the babble
bank) are reported separately. A figure, never a pass/fail.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=300, help="utterances to render")
    p.add_argument("--format", choices=["flac", "wav"], default="flac")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    t0 = time.perf_counter()
    from serac.data.synth import acoustics
    from serac.data.synth.config import load_config
    from serac.data.synth.generate import MEAN_UTT_SECONDS, Corpus, corpus_summary, write_audio

    cfg = load_config()
    corpus = Corpus(cfg, args.seed)
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    acoustics.babble_bank()
    t_babble = time.perf_counter() - t0

    # round-robin over speakers (all splits), a few utterances each
    per_spk = 3
    speakers = corpus.speakers[:: max(1, len(corpus.speakers) * per_spk // args.utts)]
    timings = {"synthesis": 0.0, "acoustics": 0.0, "writing": 0.0, "planning": 0.0}
    audio_s, n, words = 0.0, 0, 0
    conditions: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        while n < args.utts:
            for spk in speakers:
                if n >= args.utts:
                    break
                for i in range(1, per_spk + 1):
                    if n >= args.utts:
                        break
                    t = time.perf_counter()
                    plan = corpus.plan(spk, i)
                    timings["planning"] += time.perf_counter() - t
                    y = corpus.render(plan, spk, timings)
                    t = time.perf_counter()
                    write_audio(os.path.join(tmp, f"{plan.id}.{args.format}"), y, 16000, args.format)
                    timings["writing"] += time.perf_counter() - t
                    audio_s += y.size / 16000
                    words += len(plan.text.split())
                    conditions[plan.condition] = conditions.get(plan.condition, 0) + 1
                    n += 1
            per_spk += 1  # next sweep takes new utterance indices
        disk = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    total = sum(timings.values())

    print(f"bench_synth_generation: {n} utterances, {audio_s:.1f} s of audio, 1 process ({args.format})")
    print(f"  start-up: corpus tables {t_setup:.2f} s, babble bank {t_babble:.2f} s (once per job)")
    print(f"  mean utterance: {audio_s / n:.2f} s, {words / n:.1f} words "
          f"(generate.MEAN_UTT_SECONDS = {MEAN_UTT_SECONDS})")
    print(f"  conditions: {dict(sorted(conditions.items()))}")
    print(f"  {'stage':<10} {'seconds':>8} {'share':>6} {'x real time':>12}")
    for k, v in timings.items():
        print(f"  {k:<10} {v:8.2f} {100 * v / total:5.1f}% {audio_s / max(v, 1e-9):12.0f}")
    print(f"  {'total':<10} {total:8.2f} {100.0:5.1f}% {audio_s / total:12.0f}   <- x real time per core")
    print(f"  disk: {disk / audio_s / 1024:.1f} KiB per second of audio")
    summ = {k: v for k, v in corpus_summary(corpus).items() if k != "grammar"}
    hours = {s: round(sum(sp.num_utts for sp in corpus.speakers if sp.split == s) * audio_s / n / 3600, 2)
             for s in summ}
    tot_h = sum(hours.values())
    speakers = {s: v["speakers"] for s, v in summ.items()}
    print(f"  default corpus: hours per split {hours} (total {tot_h:.2f} h), speakers {speakers}")
    print(f"  projected generation: {tot_h * 3600 / (audio_s / total) / 60:.1f} min on 1 core, "
          f"{tot_h * 3600 / (audio_s / total) / 60 / 2:.1f} min with --nj 2 (plus ~5 s start-up per job)")


if __name__ == "__main__":
    main()
