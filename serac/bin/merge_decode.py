#!/usr/bin/env python3
"""Merge the shards written by ``serac.bin.decode --num-shards N`` (or ``serac.bin.decode_streaming``) into the
same files a single job writes.

Usage:
  python -m serac.bin.merge_decode --out-dir exp/lstm/decode/test --set-name test \
      --suffix greedy_search-epoch-10-avg-3 --num-shards 3
"""
from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--set-name", required=True)
    p.add_argument("--suffix", required=True)
    p.add_argument("--num-shards", type=int, required=True)
    args = p.parse_args()
    from serac.decode.shards import merge_shards
    from serac.utils import setup_logging

    setup_logging()
    try:
        merge_shards(args.out_dir, args.set_name, args.suffix, args.num_shards)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
