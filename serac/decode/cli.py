"""The command-line options ``serac.bin.decode`` and ``serac.bin.decode_streaming`` share (argparse only, so that
``--print-suffix`` calls stay quick: no torch import here)."""
from __future__ import annotations

import argparse


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Which model (exp dir, lang dir, the epochs averaged) decodes which cuts under which set name."""
    p.add_argument("--exp-dir")
    p.add_argument("--lang-dir")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1, help="average the last N epochs ending at --epoch")
    p.add_argument("--cuts")
    p.add_argument("--set-name")


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Where the results go, the shard of the cuts this job decodes, its threads, and whether the cuts are
    conversations."""
    p.add_argument("--out-dir", help="default: <exp-dir>/decode/<set-name>")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard", type=int, default=1, help="1-based shard index")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--conversations", action="store_true",
                   help="the cuts are conversations (one supervision per turn): a single-talker model decodes each "
                   "as one stream and writes hyps-<set>-<suffix>.jsonl for serac.bin.score_multitalker (a "
                   "multi-channel STS model always does)")
