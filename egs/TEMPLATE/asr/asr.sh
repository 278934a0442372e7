#!/usr/bin/env bash
# The generic stages of a serac ASR recipe (like ESPnet's TEMPLATE/asr1/asr.sh): from lhotse manifests to
# per-cohort WER. A recipe's run.sh prepares the manifests (its corpus-specific stages 0 and 1) and calls this
# script, from the recipe directory, for stages 2-6; every recipe that uses it links it:
#   ln -s ../../TEMPLATE/asr/asr.sh egs/<corpus>/asr/asr.sh
#
#   ./asr.sh --prefix mycorpus --train-set train --valid-set dev --test-sets "dev test" --cohort-keys accent,gender
#   ./asr.sh --prefix mycorpus --stage 5 --stop-stage 6 ...   # re-decode and re-score only
#
# Stages: 2 check the manifests and compute fbank, 3 lang (token inventory), 4 train, 5 decode (greedy and
# modified beam search), 6 score: the WER of every decode and, with --cohort-keys, per-cohort WER tables.
# Manifests: <manifest-dir>/<prefix>_{recordings,supervisions}_<split>.jsonl.gz (docs/your-corpus.md).
set -euo pipefail
echo "$0 $*"

stage=2
stop_stage=6
manifest_dir=data/manifests
prefix=                  # manifest name prefix (required)
train_set=train
valid_set=dev            # validation loss after each epoch (reported only; never picks a checkpoint)
test_sets="test"         # space- or comma-separated splits to decode and score
sampling_rate=auto       # auto: the training recordings' own rate (no resampling)
num_mel_bins=auto        # auto: 23 at <= 8 kHz, 80 above (docs/your-corpus.md, "Features")
fbank_dir=data/fbank
lang_kind=word           # word, char or bpe
vocab_size=500           # bpe only
lang_dir=                # default: data/lang_<kind> (data/lang_bpe_<vocab-size> for bpe)
train_config=conf/lstm.yaml
train_opts=              # more serac.bin.train options, e.g. "--set optim.lr=1e-3"
exp_dir=exp/lstm
num_epochs=              # empty: the config's train.num_epochs
seed=                    # empty: the config's train.seed
num_threads=2            # torch threads for training
avg=1                    # decode the average of the last <avg> epochs
methods="greedy_search modified_beam_search"
beam=4
nj=1                     # decode jobs per set
cohort_keys=             # comma-separated supervision attributes to score per cohort; empty: no cohort tables
n_bootstrap=1000         # speaker bootstrap resamples for the cohort intervals
help_message="Usage: $0 --prefix <prefix> [options]
Options:
  --stage <n> --stop-stage <m>    # stages 2-6 (default: $stage-$stop_stage)
  --manifest-dir <dir>            # holds <prefix>_{recordings,supervisions}_<split>.jsonl.gz (default: $manifest_dir)
  --train-set <split> --valid-set <split> --test-sets <\"s1 s2\">
  --sampling-rate <hz|auto>       # resample to this rate first; auto: the corpus's own rate
  --num-mel-bins <n|auto>         # auto: 23 at <= 8 kHz, 80 above
  --lang-kind <word|char|bpe> --vocab-size <n>
  --train-config <yaml> --train-opts <str> --exp-dir <dir> --num-epochs <n> --seed <n> --num-threads <n>
  --avg <n> --methods <\"greedy_search modified_beam_search\"> --beam <n> --nj <n>
  --cohort-keys <k1,k2>           # e.g. speaker,gender,accent (any supervision field, custom ones included)
  --n-bootstrap <n>"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ] || [ -z "$prefix" ]; then echo "$help_message" >&2; exit 1; fi
test_sets=${test_sets//,/ }
splits=$(echo "$train_set $valid_set $test_sets" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | paste -sd, -)
[ -z "$lang_dir" ] && { if [ "$lang_kind" = bpe ]; then lang_dir=data/lang_bpe_$vocab_size; else lang_dir=data/lang_$lang_kind; fi; }
cuts() { echo "$fbank_dir/${prefix}_cuts_$1.jsonl.gz"; }

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: check the manifests, fbank"
  # checks the manifests (names, recordings, transcripts, cohort keys) and picks the features from the corpus's
  # sampling rate; the choice and its reason go in the log: 80 bins on 8 kHz audio (or on audio upsampled from
  # it, whose top bins hold only the floor) gave 24-30% WER on a small corpus where 23 bins gave 2% (issue 21)
  read -r sampling_rate auto_bins native_rate < <(python3 "$SERAC_ROOT/egs/TEMPLATE/asr/local/check_manifests.py" \
    --manifest-dir "$manifest_dir" --prefix "$prefix" --splits "$splits" --score-splits "${test_sets// /,}" \
    --cohort-keys "$cohort_keys" --sampling-rate "$sampling_rate" || echo FAILED)
  [ "$sampling_rate" = FAILED ] && { echo "$0: the manifests in $manifest_dir failed the check above" >&2; exit 1; }
  [ "$num_mel_bins" = auto ] && num_mel_bins=$auto_bins
  echo "fbank: $num_mel_bins mel bins at $sampling_rate Hz (the training audio is at $native_rate Hz)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins "$num_mel_bins" --sampling-rate "$sampling_rate" \
    "$manifest_dir" "$prefix" "$splits" "$fbank_dir"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: lang ($lang_kind tokens)"
  if [ -f "$lang_dir/tokens.txt" ]; then
    echo "$lang_dir/tokens.txt exists, skipping"
  else
    steps/prepare_lang.sh --kind "$lang_kind" --vocab-size "$vocab_size" "$(cuts "$train_set")" "$lang_dir"
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: train ($train_config -> $exp_dir)"
  opts=$train_opts
  [ -n "$seed" ] && opts="$opts --seed $seed"
  steps/train.sh --cmd "$train_cmd" --train-config "$train_config" ${num_epochs:+--num-epochs $num_epochs} \
    --num-threads "$num_threads" ${opts:+--train-opts "$opts"} \
    "$lang_dir" "$(cuts "$train_set")" "$(cuts "$valid_set")" "$exp_dir"
fi

# the last epoch: --num-epochs, or the one training stopped at
epoch=$num_epochs
if [ -z "$epoch" ] && [ $stop_stage -ge 5 ]; then
  epoch=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['train']['num_epochs'])" \
    "$exp_dir/config.yaml")
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode ($methods; epoch $epoch, average of $avg)"
  for set in $test_sets; do
    for method in $methods; do
      steps/decode.sh --cmd "$decode_cmd" --nj "$nj" --epoch "$epoch" --avg "$avg" --method "$method" \
        --beam "$beam" "$exp_dir" "$lang_dir" "$(cuts "$set")" "$set"
    done
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: score${cohort_keys:+ (per cohort: $cohort_keys)}"
  for set in $test_sets; do
    for f in "$exp_dir"/decode/$set/wer-summary-$set-*.txt; do
      printf "%-70s %s\n" "$f" "$(tail -n 1 "$f" | cut -f 2)"
    done
    [ -z "$cohort_keys" ] && continue
    for recogs in "$exp_dir"/decode/$set/recogs-$set-*.txt; do
      suffix=$(basename "$recogs" .txt); suffix=${suffix#recogs-$set-}
      steps/score_cohorts.sh --cmd "$decode_cmd" --keys "$cohort_keys" --n-bootstrap "$n_bootstrap" \
        "$recogs" "$(cuts "$set")" "$exp_dir/decode/$set/cohorts-$suffix"
    done
  done
fi
echo "$0: succeeded"
