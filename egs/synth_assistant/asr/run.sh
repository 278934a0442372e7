#!/usr/bin/env bash
# synth_assistant/asr: serac's main recipe. A synthetic multi-accent voice-assistant corpus (espeak-ng speakers
# living at real US zip codes, region-dependent accents and acoustics) is generated locally (no download),
# a streaming LSTM transducer is trained on it, and WER is scored per cohort.
#
#   ./run.sh                                  # everything, default size (~30 min on 2 CPU cores)
#   ./run.sh --stage 5 --stop-stage 7         # re-decode, re-score, rewrite RESULTS.md
#   ./run.sh --num-speakers 4000 --nj 64      # a large corpus (about 100 h: see ../README.md)
#
# Stages: 0 generate, 1 check manifests, 2 fbank, 3 BPE, 4 train, 5 decode dev/test (greedy, modified beam
# search), 6 per-cohort scoring, 7 write RESULTS.md.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=7
# corpus
num_speakers=          # training speakers (empty: generator default)
utts_per_speaker=      # utterances per training speaker (empty: generator default)
hours=                 # alternatively: hours of training audio
seed=1
gen_opts=              # more generator options, e.g. "--dev-speakers 8 --test-speakers 8" (see local/generate.sh)
gen_nj=2               # generation jobs
corpus_dir=download/synth
# model
train_config=conf/lstm.yaml
exp_dir=exp/lstm
num_epochs=30
avg=5
vocab_size=256
decode_nj=2
beam=4
train_threads=2
cohort_keys=accent,gender,age_band,state,region,condition
n_bootstrap=1000
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--num-speakers N] [--utts-per-speaker N | --hours H]
          [--seed S] [--gen-nj N] [--train-config YAML] [--exp-dir DIR] [--num-epochs N] [--avg N] [--vocab-size N]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

lang=data/lang_bpe_$vocab_size
splits=train,dev,test,adapt

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: generate the synthetic corpus"
  opts="--seed $seed --nj $gen_nj"
  [ -n "$num_speakers" ] && opts="$opts --num-speakers $num_speakers"
  [ -n "$utts_per_speaker" ] && opts="$opts --utts-per-speaker $utts_per_speaker"
  [ -n "$hours" ] && opts="$opts --hours $hours"
  local/generate.sh --cmd "$train_cmd" $opts --extra-opts "$gen_opts" $corpus_dir data/manifests
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: check the manifests and summarise the corpus"
  python -m serac.bin.corpus_summary --manifest-dir data/manifests --prefix synth --splits $splits \
    --out data/manifests/summary.md
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fbank (80 bins, 16 kHz)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs 2 \
    data/manifests synth $splits data/fbank
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: BPE ($vocab_size)"
  steps/prepare_lang.sh --kind bpe --vocab-size $vocab_size data/fbank/synth_cuts_train.jsonl.gz $lang
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: train the streaming LSTM transducer"
  steps/train.sh --cmd "$train_cmd" --train-config $train_config --num-epochs $num_epochs --num-threads $train_threads \
    $lang data/fbank/synth_cuts_train.jsonl.gz data/fbank/synth_cuts_dev.jsonl.gz $exp_dir
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode dev and test"
  for set in dev test; do
    for method in greedy_search modified_beam_search; do
      steps/decode.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg --method $method \
        --beam $beam $exp_dir $lang data/fbank/synth_cuts_$set.jsonl.gz $set
    done
  done
fi

suffix=greedy_search-epoch-$num_epochs-avg-$avg
if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: per-cohort scoring ($cohort_keys)"
  for set in dev test; do
    steps/score_cohorts.sh --cmd "$decode_cmd" --keys $cohort_keys --n-bootstrap $n_bootstrap \
      $exp_dir/decode/$set/recogs-$set-$suffix.txt data/fbank/synth_cuts_$set.jsonl.gz \
      $exp_dir/decode/$set/cohorts-$suffix
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: write $results"
  python -m serac.bin.write_results --exp-dir $exp_dir --sets dev,test --cohort-set test --keys $cohort_keys \
    --cohort-suffix $suffix --title "synth_assistant / asr: streaming LSTM transducer" \
    --preamble data/manifests/summary.md --command "cd egs/synth_assistant/asr && ./run.sh" --out $results
fi
echo "$0: succeeded"
