#!/usr/bin/env bash
# synth_assistant/sv: speaker verification with adversarial reweighting (Jin et al., Interspeech 2022) on serac's
# synthetic multi-accent corpus, evaluated on held-out synthetic speakers (trials balanced by accent and gender)
# and on real voices (../shared/data/alphanumeric: 70 speakers), resemblyzer as the reference row.
#
#   ./run.sh                                   # everything, default size (see RESULTS.md for the time it took)
#   ./run.sh --stage 4 --stop-stage 6          # re-score and rewrite RESULTS.md
#   ./run.sh --variants "none pw" --train-steps 300   # fewer models, shorter training
#
# Stages: 0 generate the corpus (the asr recipe's generator, its own smaller sizes), 1 fbank, 2 train the
# baseline (no reweighting), 3 train the ARW variants (aps accumulated pairwise similarity, pl k-means
# pseudo-labels, pw pairwise weights), 4 trials over held-out speakers + scoring, 5 real-voice evaluation on
# alphanumeric (down-mixed, resampled to 16 kHz; every model and resemblyzer when importable), 6 write RESULTS.md.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=6
# corpus (serac.bin.generate_synth_corpus through ../asr/local/generate.sh)
num_speakers=200       # training speakers
utts_per_speaker=12
eval_utts_per_speaker=8
gen_opts="--dev-speakers 16 --test-speakers 24 --min-test-speakers-per-accent 6 --adapt-speakers-per-region 1"
seed=1
gen_nj=2
corpus_dir=download/synth
# models
train_config=conf/ecapa_small.yaml
train_steps=           # empty: the config's train.steps
train_opts=""          # more serac.bin.train_sv options, e.g. "--set arw.warmup_steps=100"
variants="aps pl pw"   # ARW variants trained in stage 3 (the baseline "none" is stage 2)
train_threads=1
# trials
trial_sets=dev,test    # held-out splits pooled into the synthetic trial list
num_target=15          # target / non-target trials per speaker
num_nontarget=30
alnum_dir=../../../../shared/data/alphanumeric   # real voices (SOURCE.md there); empty: skip stage 5
reference=resemblyzer  # reference row when importable; empty: none
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--num-speakers N] [--utts-per-speaker N] [--gen-opts \"...\"]
          [--train-config YAML] [--train-steps N] [--variants \"aps pl pw\"] [--alnum-dir DIR] [--reference resemblyzer|\"\"]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
cmdline="$0 $*"
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

mkdir -p exp
models="none $variants"
steps_opt=""
[ -n "$train_steps" ] && steps_opt="--set train.steps=$train_steps"
# stage<TAB>seconds, for RESULTS.md (a re-run replaces the stage's line)
timed() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  "$@"
  { grep -v "^$name	" exp/timing.tsv 2>/dev/null || true; echo "$name	$(( $(date +%s) - t0 ))"; } > exp/timing.tsv.tmp
  mv exp/timing.tsv.tmp exp/timing.tsv
}

stage_generate() {
  # the asr recipe's generator script, shared (not copied); $SERAC_ROOT comes from path.sh
  $SERAC_ROOT/egs/synth_assistant/asr/local/generate.sh --cmd "$train_cmd" --nj $gen_nj --seed $seed --num-speakers $num_speakers \
    --utts-per-speaker $utts_per_speaker --eval-utts-per-speaker $eval_utts_per_speaker --extra-opts "$gen_opts" \
    $corpus_dir data/manifests
  python -m serac.bin.corpus_summary --manifest-dir data/manifests --prefix synth --splits train,$trial_sets \
    --out data/manifests/summary.md
}
if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: generate the synthetic corpus"
  timed generate stage_generate
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: fbank (80 bins, 16 kHz)"
  timed fbank steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 \
    data/manifests synth train,$trial_sets data/fbank
fi

train_model() {  # variant
  $train_cmd --num-threads $train_threads exp/$1/log/train.log \
    python -m serac.bin.train_sv --config $train_config --set arw.variant=$1 $steps_opt $train_opts \
      --num-threads $train_threads --train-cuts data/fbank/synth_cuts_train.jsonl.gz --exp-dir exp/$1
}
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: train the baseline speaker model (no reweighting)"
  timed train-none train_model none
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: train the ARW variants ($variants)"
  for v in $variants; do timed train-$v train_model $v; done
fi

score_set() {  # set-name cuts (comma-separated): embed with every model (and the reference), score the trials
  local set=$1 cuts=$2 m
  for m in $models; do
    $train_cmd exp/$m/log/embed-$set.log \
      python -m serac.bin.sv_embed --model exp/$m/model.pt --cuts $cuts --out exp/$m/embeddings/$set.npz
    python -m serac.bin.score_sv --trials data/trials/$set.tsv --embeddings exp/$m/embeddings/$set.npz \
      --out-dir exp/$m/score/$set
  done
  [ -z "$reference" ] && return 0
  if python -c "import $reference" 2>/dev/null; then
    $train_cmd exp/$reference/log/embed-$set.log \
      python -m serac.bin.sv_embed --extractor $reference --cuts $cuts --out exp/$reference/embeddings/$set.npz
    python -m serac.bin.score_sv --trials data/trials/$set.tsv --embeddings exp/$reference/embeddings/$set.npz \
      --out-dir exp/$reference/score/$set
  else
    echo "$0: $reference is not importable (tools/install.sh --with-resemblyzer): no reference row for $set"
  fi
}

synth_cuts=$(for s in ${trial_sets//,/ }; do printf "data/fbank/synth_cuts_%s.jsonl.gz," $s; done)
synth_cuts=${synth_cuts%,}
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: trials over the held-out synthetic speakers ($trial_sets), scoring"
  python -m serac.bin.sv_trials --cuts $synth_cuts --balance-keys accent,gender --attribute-keys gender,accent \
    --num-target $num_target --num-nontarget $num_nontarget --seed $seed --out data/trials/synth.tsv
  timed score-synth score_set synth $synth_cuts
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ] && [ -n "$alnum_dir" ]; then
  echo "Stage 5: real voices ($alnum_dir): trials across its speakers, every model"
  stage_alnum() {
    [ -f data/manifests/alnum_supervisions_all.jsonl.gz ] || \
      local/prepare_alphanumeric.py $alnum_dir data/alnum data/manifests
    steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 data/manifests alnum all data/fbank
    python -m serac.bin.sv_trials --cuts data/fbank/alnum_cuts_all.jsonl.gz --balance-keys "" \
      --unequal-target-counts --attribute-keys gender,native_group --num-target $num_target \
      --num-nontarget $num_nontarget --seed $seed --out data/trials/alnum.tsv
    score_set alnum data/fbank/alnum_cuts_all.jsonl.gz
  }
  timed alnum stage_alnum
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: write $results"
  sets="synth:accent"
  [ -f data/trials/alnum.tsv ] && sets="$sets,alnum:native_group"
  python -m serac.bin.write_sv_results --exp-root exp --models "${models// /,},$reference" --sets $sets \
    --command "cd egs/synth_assistant/sv && $cmdline" --out $results
  echo "$0: wrote $results"
fi
