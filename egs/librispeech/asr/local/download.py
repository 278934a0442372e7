#!/usr/bin/env python3
"""Download LibriSpeech parts from OpenSLR with lhotse's recipe (only when run.sh is given --download true).

Usage:
  python local/download.py --target-dir download --parts "train-clean-100 dev-clean test-clean"
  # -> download/LibriSpeech/<part>/...
"""
from __future__ import annotations

import argparse

from lhotse.recipes import download_librispeech


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-dir", required=True, help="LibriSpeech/ is created inside it")
    p.add_argument("--parts", required=True, help="space- or comma-separated part names")
    args = p.parse_args()
    parts = args.parts.replace(",", " ").split()
    download_librispeech(args.target_dir, dataset_parts=parts)


if __name__ == "__main__":
    main()
