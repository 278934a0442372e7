#!/usr/bin/env bash
# Prepare a token inventory from a training cuts manifest: BPE (sentencepiece), word or char.
set -euo pipefail
echo "$0 $*"

kind=bpe
vocab_size=500
extra_symbols=    # e.g. "<sot> <eot>": tokens added as units (the turn tokens of multi-talker recipes)
help_message="Usage: $0 [--kind bpe|word|char] [--vocab-size N] [--extra-symbols \"<sot> <eot>\"] <train-cuts.jsonl.gz> <lang-dir>
e.g.: $0 --kind bpe --vocab-size 500 data/fbank/synth_cuts_train.jsonl.gz data/lang_bpe_500"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 2 ]; then echo "$help_message" >&2; exit 1; fi
python -m serac.bin.prepare_lang --cuts "$1" --lang-dir "$2" --kind "$kind" --vocab-size "$vocab_size" \
  --extra-symbols "$extra_symbols"
echo "$0: done"
