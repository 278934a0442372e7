#!/usr/bin/env python3
"""Data-parallel scaling on this machine: training samples/s with 1 and 2 processes (torchrun, gloo on CPU),
each process with 1 thread, same per-process batch; reported as throughput and scaling efficiency.

Usage (from a recipe dir, since manifests hold paths relative to it; after its fbank and lang stages):
  cd egs/yesno/asr && ../../../.venv/bin/python ../../../bench/bench_ddp_scaling.py \
      --cuts data/fbank/yesno_cuts_train.jsonl.gz --lang-dir data/lang_word [--steps 30]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(args) -> None:
    import torch
    import torch.distributed as dist

    from serac.config import load_config
    from serac.data.dataset import load_cuts, train_dataloader
    from serac.data.tokenizer import Tokenizer
    from serac.train.trainer import compute_loss, setup_distributed
    from serac.transducer.model import build_model

    torch.set_num_threads(1)
    world_size, rank, _ = setup_distributed()
    cfg = load_config(args.config)
    tok = Tokenizer(args.lang_dir)
    cuts = load_cuts(args.cuts)
    nf = next(iter(cuts)).num_features
    model = build_model(cfg["model"], nf, tok.vocab_size)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    wsr = {"world_size": world_size, "rank": rank} if world_size > 1 else {}
    dl = train_dataloader(cuts.repeat(100), args.max_duration, num_buckets=2, **wsr)
    n_utts, t0, steps = 0, None, 0
    for batch in dl:
        if steps == 3:  # warm-up steps excluded
            t0, n_utts = time.perf_counter(), 0
        loss, stats = compute_loss(ddp, batch, tok, cfg, 10**6, torch.device("cpu"), train=True)
        opt.zero_grad()
        (loss / stats["frames"]).backward()
        opt.step()
        n_utts += stats["utts"]
        steps += 1
        if steps == args.steps + 3:
            break
    elapsed = time.perf_counter() - t0
    total = torch.tensor([n_utts], dtype=torch.float64)
    if world_size > 1:
        dist.all_reduce(total)
    if rank == 0:
        print(json.dumps({"world_size": world_size, "samples_per_s": total.item() / elapsed}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--config", default=str(ROOT / "egs/yesno/asr/conf/lstm.yaml"))
    p.add_argument("--max-duration", type=float, default=30.0, help="per process")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    base = [f"--cuts={args.cuts}", f"--lang-dir={args.lang_dir}", f"--config={args.config}",
            f"--max-duration={args.max_duration}", f"--steps={args.steps}", "--worker"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = {}
    for n in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(n), __file__, *base]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        res[n] = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])["samples_per_s"]
    print(f"DDP scaling (gloo, 1 thread per process, {args.max_duration:.0f} s of audio per process per step, "
          f"{os.cpu_count()} CPUs)")
    print(f"  1 process : {res[1]:8.1f} samples/s")
    print(f"  2 processes: {res[2]:8.1f} samples/s   speed-up {res[2] / res[1]:.2f}x, "
          f"efficiency {res[2] / (2 * res[1]) * 100:.0f}%")


if __name__ == "__main__":
    main()
