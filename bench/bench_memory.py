#!/usr/bin/env python3
"""Peak resident memory of the data stages and one training epoch against corpus size (issue 14, "Memory").

The built-in synthetic corpus (serac.data.synth) is generated once at a small size (--base-speakers x
--base-utts utterances); larger corpora are made from it cheaply by TILING: the H-hour manifests list the base
recordings again and again under new recording / supervision ids (same audio files, same transcripts). Making
100 h of real synthetic speech would take about 40 core-hours; tiling changes nothing on the code paths measured,
which are the real ones, each run as its own process and measured with wait4's ru_maxrss:

  manifests  serac.bin.validate_data (the validation every recipe's feature stage runs: both manifests streamed,
             every audio header read) and serac.bin.corpus_summary (the synth recipe's stage 1)
  features   serac.bin.compute_fbank (80 bins, 16 kHz, 1 job): cuts made per recording, features streamed to
             one archive
  lang       serac.bin.prepare_lang (BPE 64 on the training transcripts)
  train      serac.bin.train, one epoch of a tiny LSTM transducer (the trainer, its sampler and data loader,
             feature statistics, validation, checkpoint) on 1 thread; --train-max-hours caps the sizes it runs at.
             With --tile-cuts-from H0 (sizes above H0 only) the training cuts are the H0-hour cuts tiled under new
             ids (their features read from the H0 archive) instead of new features: the trainer's path is the
             same, and the fbank CPU time (about 1 core-minute per hour of audio) is saved

Usage:
  python bench/bench_memory.py --hours 10,30 --work-dir /tmp/bench_memory          # ~10 min per 10 h on 1 core
  python bench/bench_memory.py --hours 100 --work-dir /tmp/bench_memory --stages manifests,features
  # prints one table row per size and stage: hours, cuts, peak RSS (MB), CPU and wall seconds (--out FILE: also
  # appends the rows there)
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY_CONFIG = """\
model:
  encoder: {name: lstm, hidden_dim: 64, num_layers: 1, output_dim: 64}
  decoder_dim: 32
  joiner_dim: 32
loss: {onset_margin: 2}
data: {max_duration: 200.0, num_buckets: 10}
train: {num_epochs: 1, log_interval: 200, tensorboard: false, progress_bar: false, num_threads: 1}
"""


def base_corpus(work: Path, speakers: int, utts: int) -> Path:
    """The small real corpus (generated once); returns its manifest dir."""
    mdir = work / "base" / "manifests"
    if (mdir / "synth_supervisions_train.jsonl.gz").is_file():
        return mdir
    # in a child process: this one must stay small, since a child's ru_maxrss starts at its parent's size
    splits = {"train": {"speakers": speakers, "utts_per_speaker": utts},
              "dev": {"speakers": 2, "utts_per_speaker": 2, "min_per_accent": 0, "min_per_region": 0},
              "test": {"speakers": 1, "utts_per_speaker": 1, "min_per_accent": 0, "min_per_region": 0},
              "adapt": {"speakers_per_region": 0, "utts_per_speaker": 1}}
    code = ("import sys; from serac.data.synth.config import load_config; "
            "from serac.data.synth.generate import generate_corpus; "
            f"generate_corpus({str(work / 'base' / 'corpus')!r}, {str(mdir)!r}, seed=1, "
            f"cfg=load_config(overrides={{'splits': {splits!r}}}), nj=1)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return mdir


def read_lines(path: Path) -> list:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def tile(base: Path, split: str, hours: float, out: Path) -> int:
    """Write ``out``/synth_{recordings,supervisions}_train.jsonl.gz of about ``hours`` by repeating the base
    ``split`` under new ids, streaming; returns the number of supervisions."""
    recs = read_lines(base / f"synth_recordings_{split}.jsonl.gz")
    sups = read_lines(base / f"synth_supervisions_{split}.jsonl.gz")
    for r in recs:  # absolute audio paths: the tiled manifests live elsewhere
        for s in r["sources"]:
            s["source"] = str((Path.cwd() / s["source"]).resolve())
    base_seconds = sum(s["duration"] for s in sups)
    copies = max(1, round(hours * 3600 / base_seconds))
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "synth_recordings_train.jsonl.gz", "wt") as fr, \
            gzip.open(out / "synth_supervisions_train.jsonl.gz", "wt") as fs:
        for k in range(copies):
            for r in recs:
                fr.write(json.dumps({**r, "id": f"{r['id']}-c{k}"}) + "\n")
            for s in sups:
                fs.write(json.dumps({**s, "id": f"{s['id']}-c{k}", "recording_id": f"{s['recording_id']}-c{k}"})
                         + "\n")
    return copies * len(sups)


def tile_cuts(src: Path, factor: float, out: Path) -> int:
    """Write ``out``: the cuts of ``src`` repeated round(factor) times under new ids (features shared)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with gzip.open(out, "wt") as f:
        for k in range(max(1, round(factor))):
            with gzip.open(src, "rt") as g:
                for line in g:
                    cut = json.loads(line)
                    cut["id"] = f"{cut['id']}-t{k}"
                    for s in cut["supervisions"]:
                        s["id"] = f"{s['id']}-t{k}"
                    f.write(json.dumps(cut) + "\n")
                    n += 1
    return n


def measure(cmd: list, log: Path) -> tuple:
    """(peak RSS in MB of the process and the children it waited for, CPU seconds (user + system), wall
    seconds); raises on failure. Linux
    starts a child's ru_maxrss at its parent's size, so this process imports nothing big (about 15 MB)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}); see {log}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, time.monotonic() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", default="10,30,100")
    p.add_argument("--work-dir", default="/tmp/bench_memory")
    p.add_argument("--stages", default="manifests,features,lang,train")
    p.add_argument("--base-speakers", type=int, default=12)
    p.add_argument("--base-utts", type=int, default=10)
    p.add_argument("--train-max-hours", type=float, default=1000.0, help="run the train stage only up to this size")
    p.add_argument("--tile-cuts-from", type=float, default=0.0,
                   help="train larger sizes on the cuts of this (already computed) size, tiled; see above")
    p.add_argument("--out", help="also append the table rows to this file")
    args = p.parse_args()
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    base = base_corpus(work, args.base_speakers, args.base_utts)
    stages = [s for s in args.stages.split(",") if s]
    py = sys.executable
    # validation cuts for the trainer: the base dev split, computed once
    valid_dir = work / "valid"
    if "train" in stages and not (valid_dir / "fbank" / "synth_cuts_train.jsonl.gz").is_file():
        tile(base, "dev", 0.0, valid_dir / "manifests")
        subprocess.run([py, "-m", "serac.bin.compute_fbank", "--manifest-dir", str(valid_dir / "manifests"),
                        "--prefix", "synth", "--split", "train", "--out-dir", str(valid_dir / "fbank"),
                        "--num-mel-bins", "80", "--sampling-rate", "16000", "--backend", "lhotse"],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (work / "tiny.yaml").write_text(TINY_CONFIG)
    header = "| hours | cuts | stage | peak RSS (MB) | CPU s | wall s |\n|---|---|---|---|---|---|"
    print(header, flush=True)
    rows = []
    for hours in [float(h) for h in args.hours.split(",") if h]:
        d = work / f"{hours:g}h"
        n = tile(base, "train", hours, d / "manifests")
        mdir, fb = d / "manifests", d / "fbank"
        commands = {
            "manifests": [[py, "-m", "serac.bin.validate_data", "--manifest-dir", mdir, "--prefix", "synth",
                           "--splits", "train", "--out-dir", fb / "validate", "--sampling-rate", "16000",
                           "--num-mel-bins", "80"],
                          [py, "-m", "serac.bin.corpus_summary", "--manifest-dir", mdir, "--prefix", "synth",
                           "--splits", "train", "--keys", "accent", "--out", d / "summary.md"]],
            "features": [[py, "-m", "serac.bin.compute_fbank", "--manifest-dir", mdir, "--prefix", "synth",
                          "--split", "train", "--out-dir", fb, "--num-mel-bins", "80", "--sampling-rate", "16000",
                          "--backend", "lhotse", "--validation-report", fb / "validate" / "synth_train.json",
                          "--force"]],
            "lang": [[py, "-m", "serac.bin.prepare_lang", "--cuts", fb / "synth_cuts_train.jsonl.gz", "--lang-dir",
                      d / "lang_bpe_64", "--kind", "bpe", "--vocab-size", "64"]],
            "train": [[py, "-m", "serac.bin.train", "--config", work / "tiny.yaml", "--exp-dir", d / "exp",
                       "--lang-dir", d / "lang_bpe_64", "--train-cuts", fb / "synth_cuts_train.jsonl.gz",
                       "--valid-cuts", valid_dir / "fbank" / "synth_cuts_train.jsonl.gz", "--start-epoch", "1"]],
        }
        if args.tile_cuts_from and hours > args.tile_cuts_from:
            src = work / f"{args.tile_cuts_from:g}h"
            n = tile_cuts(src / "fbank" / "synth_cuts_train.jsonl.gz", hours / args.tile_cuts_from,
                          fb / "synth_cuts_train.jsonl.gz")
            commands["lang"] = [["cp", "-r", src / "lang_bpe_64", d / "lang_bpe_64"]]
        for stage in stages:
            if stage == "train" and hours > args.train_max_hours:
                continue
            peak, cpu, wall = 0.0, 0.0, 0.0
            for i, cmd in enumerate(commands[stage]):
                if stage == "train":
                    subprocess.run(["rm", "-rf", str(d / "exp")], check=True)
                rss, cpu_s, wall_s = measure([str(c) for c in cmd], d / f"{stage}.{i}.log")
                peak, cpu, wall = max(peak, rss), cpu + cpu_s, wall + wall_s
            row = f"| {hours:g} | {n} | {stage} | {peak:.0f} | {cpu:.0f} | {wall:.0f} |"
            rows.append(row)
            print(row, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(row + "\n")


if __name__ == "__main__":
    main()
