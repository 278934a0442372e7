#!/usr/bin/env bash
# synth_assistant/amortized: the compute-cost amortized Transformer (Xie et al., Interspeech 2022) on the data of
# the asr recipe next door (its data/ is used read only; its stages 0-3 are run first if it has none).
# A dense streaming Transformer transducer is trained from scratch; it is then fine-tuned for --ft-epochs epochs
# (1) as is (the dense reference), (2) with a restricted attention left context (sliding-window baseline) and
# (3) with per-frame MHA/FFN arbitrators for each cost weight of the sweep. Every fine-tuned model is decoded on
# test (greedy) with its executed encoder FLOPs per utterance, timed against the dense reference in one process
# on one thread, and scored per cohort; RESULTS.md is written from those files.
#
#   ./run.sh                                         # everything (about 3 h on 2 CPU cores: docs/encoders.md)
#   ./run.sh --cost-weights "0.1 0.3 1 3 10" --stage 3     # another sweep (stages 3-7; finished runs are kept)
#   ./run.sh --stage 7                               # rewrite RESULTS.md
#
# Stages: 0 data (the corpus of ../asr, linked by ./prepare.sh, which prepares it there if needed), 1 train dense, 2 fine-tune dense reference and
# sliding-window baselines, 3 fine-tune amortized models (cost-weight sweep), 4 decode test (greedy, per-utterance
# compute), 5 encoder CPU time vs dense (1 thread, one process), 6 per-cohort WER, 7 RESULTS.md.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=7
asr_dir=../asr                 # the recipe whose data is used (read only)
vocab_size=64                  # its BPE inventory (data/lang_bpe_<vocab_size>)
prefix=synth
dense_config=conf/dense.yaml
dense_epochs=12
dense_threads=2                # the dense model trains alone: both cores
ft_epochs=6                    # every fine-tuned variant (dense reference included) gets the same epochs
ft_threads=1                   # fine-tunes run --nj at a time, one thread each (better than 2 threads each
nj=2                           # on 2 cores: small matmuls scale poorly)
sw_left_contexts="4"           # sliding-window baselines: attention left context in frames (dense: 32)
cost_weights="0.1 0.2 0.3 0.4 1"  # the amortized sweep (0.3-0.4: about half the FLOPs, 1: about a quarter)
kd_cost_weights="0.3 0.4 0.5 0.6 0.8"  # amortized fine-tunes also distilled from the dense reference (conf/amortized_distill.yaml;
                               # serac's addition): variants amortized-kd-cw<W>; "" for none
decode_threads=1
timing_repeats=2               # passes over test per model in stage 5
cohort_keys=accent,gender,age_band,region,condition
compute_key=accent             # compute fraction per cohort of this key in RESULTS.md
n_bootstrap=1000
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--asr-dir DIR] [--vocab-size N] [--dense-epochs N]
          [--ft-epochs N] [--nj N] [--sw-left-contexts \"L1 L2\"] [--cost-weights \"W1 W2 ...\"]
          [--kd-cost-weights \"W1 ...\"] [--n-bootstrap N]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

lang=data/lang_bpe_$vocab_size
train_cuts=data/fbank/${prefix}_cuts_train.jsonl.gz
dev_cuts=data/fbank/${prefix}_cuts_dev.jsonl.gz
test_cuts=data/fbank/${prefix}_cuts_test.jsonl.gz
mkdir -p exp
timing=exp/timing.tsv
. utils/stage_utils.sh $timing   # stage_done N name: the stage's wall time into $timing

# the fine-tuned variants: name -> config and overrides
variants="dense-ft"
for l in $sw_left_contexts; do variants="$variants sw-lc$l"; done
for w in $cost_weights; do variants="$variants amortized-cw$w"; done
for w in $kd_cost_weights; do variants="$variants amortized-kd-cw$w"; done
variant_config() {
  case $1 in
    dense-ft) echo conf/dense_continue.yaml ;;
    sw-lc*) echo conf/sliding_window.yaml ;;
    amortized-kd-*) echo conf/amortized_distill.yaml ;;
    *) echo conf/amortized.yaml ;;
  esac
}
variant_set() {
  case $1 in
    sw-lc*) echo "--set model.encoder.left_context=${1#sw-lc}" ;;
    amortized-cw*) echo "--set model.encoder.cost_weight=${1#amortized-cw}" ;;
    # the teacher is the dense reference after its own fine-tune (stage 2)
    amortized-kd-cw*) echo "--set model.encoder.cost_weight=${1#amortized-kd-cw} --set distill.teacher=exp/dense-ft/epoch-$ft_epochs.pt" ;;
  esac
}
fine_tune() {  # fine_tune VARIANT...: train each from the dense model, --nj at a time
  local pids=() v
  for v in "$@"; do
    steps/train.sh --cmd "$train_cmd" --train-config $(variant_config $v) --num-epochs $ft_epochs \
      --num-threads $ft_threads --train-opts "--init-from exp/dense/epoch-$dense_epochs.pt $(variant_set $v)" \
      $lang $train_cuts $dev_cuts exp/$v > exp/log/train-$v.out 2>&1 &
    pids+=($!)
    echo "fine-tuning $v (exp/$v/log/train.log)"
    if [ ${#pids[@]} -ge $nj ]; then
      wait ${pids[0]} || { echo "$0: a fine-tune failed: see exp/log/train-*.out" >&2; exit 1; }
      pids=("${pids[@]:1}")
    fi
  done
  for p in ${pids[@]+"${pids[@]}"}; do
    wait $p || { echo "$0: a fine-tune failed: see exp/log/train-*.out" >&2; exit 1; }
  done
}
mkdir -p exp/log

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: data from $asr_dir (features and BPE, linked read only into data/)"
  ./prepare.sh --home "$asr_dir" --vocab-size $vocab_size   # prepares the corpus there first if it has none
  stage_done 0 data
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: train the dense streaming Transformer ($dense_epochs epochs)"
  steps/train.sh --cmd "$train_cmd" --train-config $dense_config --num-epochs $dense_epochs \
    --num-threads $dense_threads $lang $train_cuts $dev_cuts exp/dense
  grep -h "epoch $dense_epochs:" exp/dense/log/train.log | tail -n 1 | cut -d ' ' -f 5- || true
  stage_done 1 dense
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fine-tune the dense reference and the sliding-window baselines ($ft_epochs epochs)"
  fine_tune dense-ft $(for l in $sw_left_contexts; do echo sw-lc$l; done)
  stage_done 2 baselines
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: fine-tune amortized models, cost weights: $cost_weights; distilled: ${kd_cost_weights:-none} ($ft_epochs epochs)"
  [ -z "$kd_cost_weights" ] || [ -f exp/dense-ft/epoch-$ft_epochs.pt ] || \
    { echo "$0: exp/dense-ft/epoch-$ft_epochs.pt (the distillation teacher) missing: run stage 2" >&2; exit 1; }
  fine_tune $(for w in $cost_weights; do echo amortized-cw$w; done) $(for w in $kd_cost_weights; do echo amortized-kd-cw$w; done)
  stage_done 3 amortized
fi

suffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $ft_epochs --avg 1)
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: decode test (greedy search), executed encoder FLOPs per utterance"
  for v in $variants; do
    steps/decode.sh --cmd "$decode_cmd" --nj 1 --num-threads $decode_threads --epoch $ft_epochs --avg 1 \
      --method greedy_search exp/$v $lang $test_cuts test
  done
  stage_done 4 decode
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: encoder CPU time on test vs dense (one process, 1 thread, models interleaved per batch)"
  models=""
  for v in $variants; do models="$models --model $v=exp/$v:$ft_epochs:1"; done
  $decode_cmd --num-threads 1 exp/log/time_encoders.log \
    python -m serac.bin.time_encoders --cuts $test_cuts --lang-dir $lang $models --reference dense-ft \
    --repeats $timing_repeats --num-threads 1 --out exp/encoder-time.json
  cat exp/encoder-time.tsv
  stage_done 5 timing
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: per-cohort WER ($cohort_keys)"
  for v in $variants; do
    d=exp/$v/decode/test
    if [ -f $d/cohorts-$suffix/cohort-summary-$compute_key.json ] && \
       [ $d/cohorts-$suffix/cohort-summary-$compute_key.json -nt $d/recogs-test-$suffix.txt ]; then
      echo "$d/cohorts-$suffix is up to date"; continue
    fi
    steps/score_cohorts.sh --cmd "$decode_cmd" --keys $cohort_keys --n-bootstrap $n_bootstrap \
      $d/recogs-test-$suffix.txt $test_cuts $d/cohorts-$suffix > /dev/null
  done
  stage_done 6 cohorts
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: $results"
  models=""
  for v in $variants; do models="$models --model $v=exp/$v"; done
  python local/write_results.py $models --reference dense-ft --init exp/dense --suffix $suffix \
    --cuts $test_cuts --timing exp/encoder-time.json --stage-timing $timing --compute-key $compute_key \
    --plot results/wer-vs-compute.png --command "cd egs/synth_assistant/amortized && ./run.sh" \
    --n-bootstrap $n_bootstrap --out $results
  echo "wrote $results"
fi
echo "$0: succeeded"
