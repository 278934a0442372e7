#!/usr/bin/env bash
# yesno: the smallest end-to-end serac recipe (60 utterances of one speaker saying YES/NO, 8 kHz).
#
#   ./run.sh                                   # downloads yesno with lhotse (needs internet)
#   ./run.sh --corpus-dir /path/to/waves_yesno # uses an existing copy
#   ./run.sh --stage 4 --stop-stage 5          # re-run training and decoding only
#
# Stages: 0 get corpus, 1 manifests, 2 fbank, 3 lang, 4 train, 5 decode, 6 score.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=6
corpus_dir=          # an existing waves_yesno directory; empty: download into $dl_dir
dl_dir=download
train_config=conf/lstm.yaml
exp_dir=exp/lstm
num_epochs=60
avg=10
nj=1
help_message="Usage: $0 [--stage N] [--stop-stage M] [--corpus-dir DIR] [--exp-dir DIR] [--num-epochs N] [--avg N] [--nj N]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi
[ -n "$corpus_dir" ] && corpus_dir=$(readlink -f "$corpus_dir")
[ -z "$corpus_dir" ] && corpus_dir=$dl_dir/waves_yesno

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: get the corpus"
  if [ -d "$corpus_dir" ]; then
    echo "using $corpus_dir ($(ls "$corpus_dir"/*.wav | wc -l) wav files)"
  else
    lhotse download yesno "$dl_dir"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: lhotse manifests"
  if [ ! -f data/manifests/yesno_supervisions_test.jsonl.gz ]; then
    lhotse prepare yesno "$corpus_dir" data/manifests
  else
    echo "data/manifests exist, skipping"
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fbank (23 bins, 8 kHz)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 23 --sampling-rate 8000 \
    data/manifests yesno train,test data/fbank
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: lang (word tokens)"
  steps/prepare_lang.sh --kind word data/fbank/yesno_cuts_train.jsonl.gz data/lang_word
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: train the streaming LSTM transducer"
  # yesno has no dev set: the test set is the validation set, as in icefall's yesno recipe
  steps/train.sh --cmd "$train_cmd" --train-config $train_config --num-epochs $num_epochs --num-threads 2 \
    data/lang_word data/fbank/yesno_cuts_train.jsonl.gz data/fbank/yesno_cuts_test.jsonl.gz $exp_dir
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode"
  for method in greedy_search modified_beam_search; do
    steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $num_epochs --avg $avg --method $method \
      $exp_dir data/lang_word data/fbank/yesno_cuts_test.jsonl.gz test
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: score"
  for f in $exp_dir/decode/test/wer-summary-test-*.txt; do
    printf "%-70s %s\n" "$f" "$(tail -n 1 "$f" | cut -f 2)"
  done
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
