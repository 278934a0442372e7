#!/usr/bin/env python3
"""Train a token n-gram LM (interpolated Kneser-Ney, ARPA) on a lang dir's training transcripts.

  python -m serac.bin.train_lm --lang-dir data/lang_bpe_64 --order 6 --out data/lang_bpe_64/lm-6gram.arpa

The text is <lang-dir>/transcript_words.txt (written by prepare_lang from the training cuts only; one
utterance per line), tokenised with the lang dir's own tokenizer, so the LM predicts the transducer's output
tokens. Used by modified beam search for shallow fusion (serac.bin.decode --lm ... --lm-scale ...).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from serac.data.tokenizer import Tokenizer
from serac.lm.ngram import NgramLm
from serac.utils import setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--order", type=int, default=6)
    p.add_argument("--text", help="one sentence per line (default: <lang-dir>/transcript_words.txt)")
    p.add_argument("--out", required=True, help="ARPA file to write")
    args = p.parse_args()
    setup_logging()
    tok = Tokenizer(args.lang_dir)
    text = Path(args.text or Path(args.lang_dir) / "transcript_words.txt")
    if not text.is_file():
        raise SystemExit(f"{text} not found: run prepare_lang first, or pass --text")
    lines = [ln.strip() for ln in text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise SystemExit(f"{text} has no sentences")
    sentences = [tok.encode(ln) for ln in lines]
    lm = NgramLm.train(sentences, order=args.order, vocab_size=tok.vocab_size)
    lm.write_arpa(args.out, tok.id2token)
    n_tok = sum(map(len, sentences))
    logging.info(f"{args.out}: {args.order}-gram over {tok.vocab_size} tokens from {len(lines)} sentences "
                 f"({n_tok} tokens) of {text}; {len(lm.logp)} n-grams")


if __name__ == "__main__":
    main()
