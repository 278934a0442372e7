#!/usr/bin/env python3
"""Per-speaker WER table from a recogs file and the cuts it decoded (speakers from the supervisions), the rows
NIST sclite prints per speaker.

Usage:
  python -m serac.bin.per_speaker_wer --recogs exp/lstm/decode/test/recogs-test-greedy_search-epoch-60-avg-10.txt \
      --cuts data/fbank/yesno_cuts_test.jsonl.gz --out exp/lstm/decode/test/per-speaker-test-greedy_search-epoch-60-avg-10.tsv
  # the same rows from sclite: serac.scoring.wer.write_trn(..., speakers=...) then
  #   sctk sclite -r ref.trn trn -h hyp.trn trn -i rm -s -o rsum stdout
"""
from __future__ import annotations

import argparse
import logging

from serac.scoring.per_speaker import cut_speakers, per_speaker_rows, write_per_speaker_table
from serac.scoring.wer import load_transcripts
from serac.utils import setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recogs", required=True)
    p.add_argument("--cuts", required=True, help="cuts or supervisions manifest with the speakers")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    setup_logging()
    speakers = cut_speakers(args.cuts)
    try:
        counts = write_per_speaker_table(args.out, load_transcripts(args.recogs), speakers)
    except KeyError as e:
        raise SystemExit(f"{args.recogs} vs {args.cuts}: {e.args[0]}")
    total = per_speaker_rows(counts)[-1]
    logging.info(f"wrote {args.out}: {len(counts)} speakers, WER {total[8]}%")


if __name__ == "__main__":
    main()
