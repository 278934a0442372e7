#!/usr/bin/env python3
"""Prepare a token inventory (data/lang_*) from the training transcripts.

Usage:
  python -m serac.bin.prepare_lang --cuts data/fbank/yesno_cuts_train.jsonl.gz --lang-dir data/lang_word --kind word
  python -m serac.bin.prepare_lang --cuts data/fbank/synth_cuts_train.jsonl.gz --lang-dir data/lang_bpe_500 \
      --kind bpe --vocab-size 500
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import load_manifest_lazy

from serac.data.tokenizer import prepare_bpe_lang, prepare_word_lang
from serac.utils import setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", required=True, help="cuts or supervisions manifest with the transcripts")
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--kind", choices=["bpe", "word", "char"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=500)
    p.add_argument("--extra-symbols", default="", help="space-separated tokens added to the inventory as units, "
                   "e.g. '<sot> <eot>' (the turn tokens of serac.multitalker)")
    args = p.parse_args()
    setup_logging()
    lang_dir = Path(args.lang_dir)
    if (lang_dir / "tokens.txt").is_file() and (lang_dir / "kind").is_file():
        logging.info(f"{lang_dir}/tokens.txt exists; skipping")
        return
    manifest = load_manifest_lazy(args.cuts)

    def texts():
        for item in manifest:
            sups = getattr(item, "supervisions", None)
            for s in (sups if sups is not None else [item]):
                if s.text:
                    yield s.text

    if args.kind == "bpe":
        prepare_bpe_lang(texts(), lang_dir, args.vocab_size, args.extra_symbols.split())
    else:
        prepare_word_lang(texts(), lang_dir, args.kind, args.extra_symbols.split())
    logging.info(f"wrote {lang_dir}/tokens.txt")


if __name__ == "__main__":
    main()
