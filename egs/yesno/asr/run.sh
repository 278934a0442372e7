#!/usr/bin/env bash
# yesno: the smallest end-to-end serac recipe (60 utterances of one speaker saying YES/NO, 8 kHz).
# Its own stages get the corpus and write the lhotse manifests; the generic stages are the template's
# (asr.sh -> ../../TEMPLATE/asr/asr.sh; docs/your-corpus.md).
#
#   ./run.sh                                   # downloads yesno with lhotse into download/ (needs internet)
#   ./run.sh --corpus-dir /path/to/waves_yesno # uses an existing copy
#   ./run.sh --stage 4 --stop-stage 5          # re-run training and decoding only
#   ./run.sh --seed 2 --num-threads 1 --exp-dir exp/lstm-seed2   # another training seed (bench/yesno_seeds.sh)
#
# Stages: 0 get corpus, 1 manifests, then asr.sh: 2 fbank, 3 lang, 4 train, 5 decode, 6 score.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=6
corpus_dir=          # an existing waves_yesno directory; empty: download into $dl_dir
dl_dir=download
train_config=conf/lstm.yaml
exp_dir=exp/lstm
num_epochs=100
avg=10
seed=                # empty: the config's train.seed
num_threads=1        # torch threads for training (1: the same numbers on any machine of a kind; see conf/lstm.yaml)
nj=1
help_message="Usage: $0 [--stage N] [--stop-stage M] [--corpus-dir DIR] [--dl-dir DIR] [--exp-dir DIR]
          [--train-config YAML] [--num-epochs N] [--avg N] [--seed N] [--num-threads N] [--nj N]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi
if [ -n "$corpus_dir" ]; then
  # a corpus the user names must exist: never download in its place
  [ -d "$corpus_dir" ] || { echo "$0: --corpus-dir $corpus_dir: no such directory" >&2; exit 1; }
  corpus_dir=$(readlink -f "$corpus_dir")
else
  corpus_dir=$dl_dir/waves_yesno
fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: get the corpus"
  if [ -d "$corpus_dir" ]; then
    echo "using $corpus_dir ($(find "$corpus_dir" -maxdepth 1 -name '*.wav' | wc -l) wav files)"
  else
    echo "no --corpus-dir given: downloading yesno into $dl_dir with lhotse"
    if ! lhotse download yesno "$dl_dir"; then
      rm -f "$dl_dir/waves_yesno.tar.gz"  # offline, lhotse leaves an empty archive that a rerun would trust
      echo "$0: downloading yesno into $dl_dir failed; give an existing copy with --corpus-dir" >&2; exit 1
    fi
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: lhotse manifests"
  if [ ! -f data/manifests/yesno_supervisions_test.jsonl.gz ]; then
    [ -d "$corpus_dir" ] || { echo "$0: $corpus_dir: no such directory (run stage 0)" >&2; exit 1; }
    lhotse prepare yesno "$corpus_dir" data/manifests
  else
    echo "data/manifests exist, skipping"
  fi
fi

if [ $stop_stage -ge 2 ]; then
  # yesno has no dev set: the test set is the validation set, as in icefall's yesno recipe
  ./asr.sh --stage $((stage > 2 ? stage : 2)) --stop-stage $stop_stage --prefix yesno \
    --train-set train --valid-set test --test-sets test --sampling-rate 8000 --num-mel-bins 23 \
    --lang-kind word --train-config $train_config --exp-dir $exp_dir --num-epochs $num_epochs \
    ${seed:+--seed $seed} --num-threads $num_threads --avg $avg --nj $nj
fi
# sherpa-onnx (not run by default: --stage 7 --stop-stage 7): the final model exported to ONNX, decoded by sherpa-onnx
# from the audio (it computes the fbank itself), offline and streaming in 160 ms chunks (16 frames); the results get
# a sherpa- suffix next to serac's own (docs/export.md)
if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: export to sherpa-onnx and decode test with it (offline and streaming)"
  sherpa_dir=$exp_dir/sherpa-onnx-epoch-$num_epochs-avg-$avg
  for mode in offline streaming; do
    steps/export.sh --cmd "$train_cmd" --epoch $num_epochs --avg $avg --mode $mode --chunk-frames 16 \
      --sample-rate 8000 $exp_dir data/lang_word $sherpa_dir/$mode
    steps/decode_sherpa.sh --cmd "$decode_cmd" --epoch $num_epochs --avg $avg $sherpa_dir/$mode $exp_dir \
      data/fbank/yesno_cuts_test.jsonl.gz test
  done
fi
echo "$0: succeeded"
