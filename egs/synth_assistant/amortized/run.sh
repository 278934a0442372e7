#!/usr/bin/env bash
# synth_assistant/amortized: the compute-cost amortized Transformer (Xie et al., Interspeech 2022) on the data of
# the asr recipe next door (its data/ is used read only; its stages 0-3 are run first if it has none).
# A dense streaming Transformer transducer is trained from scratch; it is then fine-tuned for --ft-epochs epochs
# (1) as is (the dense reference), (2) with a restricted attention left context (sliding-window baseline) and
# (3) with per-frame MHA/FFN arbitrators for each cost weight of the sweep (also distilled from the reference).
# (4) The paper's own recipe, arbitrators trained jointly with the model from scratch (a gate warm-up, then the
# cost term ramped in), runs for each --joint-cost-weights for as many epochs as the reference had in all.
# Every model is decoded on dev; the operating point (fewest FLOPs within +5% relative dev WER) is chosen there,
# and (5) its static counterpart is fine-tuned: the modules its gates mostly switch off dropped on every frame
# (matched FLOPs, no input-adaptivity). Test is decoded once per model (modified beam search, executed encoder
# FLOPs and module use per utterance), timed against the dense reference in one process on one thread, scored
# per cohort; RESULTS.md is written from those files.
#
#   ./run.sh                                         # everything (time: README.md / RESULTS.md)
#   ./run.sh --cost-weights "0.1 0.3 1 3 10" --stage 3     # another sweep (stages 3-10; finished runs are kept)
#   ./run.sh --stage 10                              # rewrite RESULTS.md
#   # on 2 cores, the joint model (stage 4, from scratch) beside the dense one, one thread each (a 2-thread training
#   # alone was only ~7% faster per epoch than a 1-thread one beside another), then the rest:
#   ./run.sh --stop-stage 0
#   ./run.sh --stage 1 --stop-stage 1 --dense-threads 1 & ./run.sh --stage 4 --stop-stage 4 --joint-threads 1; wait
#   ./run.sh --stage 2 --stop-stage 3 && ./run.sh --stage 5
#
# Stages: 0 data (the corpus of ../asr, linked by ./prepare.sh, which prepares it there if needed), 1 train dense,
# 2 fine-tune the dense reference and sliding-window baselines, 3 fine-tune amortized models (cost-weight sweep),
# 4 joint training from scratch, 5 decode dev, 6 choose the operating point on dev and fine-tune its static
# baseline, 7 decode test (beam search, per-utterance compute), 8 encoder CPU time vs dense (1 thread, one process),
# 9 per-cohort WER, 10 RESULTS.md.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=10
asr_dir=../asr                 # the recipe whose data is used (read only)
vocab_size=64                  # its BPE inventory (data/lang_bpe_<vocab_size>)
prefix=synth
dense_config=conf/dense.yaml
dense_epochs=30                # the dense model's training (the joint models train this + ft_epochs): at 12 it still
                               # underfit (train loss 0.30, the LSTM's 0.12 at 12); dev WER by epoch in docs/encoders.md
dense_threads=2                # the dense model trains alone: both cores
ft_epochs=6                    # every fine-tuned variant (dense reference included) gets the same epochs
ft_threads=1                   # fine-tunes run --nj at a time, one thread each (better than 2 threads each
nj=2                           # on 2 cores: small matmuls scale poorly)
sw_left_contexts="4"           # sliding-window baselines: attention left context in frames (dense: 32)
cost_weights="0.13 0.26 0.4 0.52 1.3"  # the amortized sweep: the 16-channel front end's 0.1 0.2 0.3 0.4 1 (0.3-0.4 gave
                               # about half the FLOPs, 1 about a quarter) x 1.31, the growth of the dense FLOPs with
                               # the 64-channel front end: the cost term is a fraction of those, so that keeps each
                               # module's FLOP price
kd_cost_weights="0.4 0.52 0.65 0.8 1.05"  # amortized fine-tunes also distilled from the dense reference (conf/amortized_distill.yaml;
                               # serac's addition): variants amortized-kd-cw<W>; "" for none
joint_cost_weights="0.3"       # joint training from scratch (conf/amortized_joint.yaml, the paper's recipe; each
                               # costs a dense training): variants joint-cw<W>; "" for none (not rescaled like
                               # the sweep: 0.3 is about the 16-channel model's 0.23)
joint_threads=2
max_rel_wer=5                  # the operating point: fewest FLOPs within this relative dev WER (%) of dense-ft
decode_threads=1
decode_method=modified_beam_search  # every decode (dev and test); chosen on dev: greedy search costs the Transformer
beam=4                         # 3-3.5 WER points, the LSTM 0.7-1.6 (docs/encoders.md, "Thirty epochs, and beam
                               # search"); the encoder FLOPs counted are the same either way
avg=3                          # every model decoded with its last 3 epochs' checkpoints averaged (the last half of a
                               # fine-tune); chosen on dev: the reference's dev WER with 1 / 2 / 3 / 4 / 6 averaged:
                               # 16.27 / 14.59 / 14.50 / 14.33 / 14.21% (beam 4; the confs keep 3 checkpoints)
timing_repeats=2               # passes over test per model in stage 8
cohort_keys=accent,gender,age_band,region,condition
compute_keys=accent,condition  # executed compute per cohort of these keys in RESULTS.md
n_bootstrap=1000
lstm_recogs=auto               # a test decode RESULTS.md compares the dense reference with ("" for none); auto: the
                               # LSTM transducer of $asr_dir as that recipe's stage 5 decodes it (beam 4, no LM,
                               # epoch 15, 5 averaged: its defaults)
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--asr-dir DIR] [--vocab-size N] [--dense-epochs N]
          [--ft-epochs N] [--nj N] [--sw-left-contexts \"L1 L2\"] [--cost-weights \"W1 W2 ...\"]
          [--kd-cost-weights \"W1 ...\"] [--joint-cost-weights \"W1 ...\"] [--max-rel-wer P]
          [--decode-method M] [--beam N] [--avg N] [--lstm-recogs FILE] [--n-bootstrap N]
          [--dense-threads N] [--joint-threads N] [--ft-threads N]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi
[ "$lstm_recogs" != auto ] || lstm_recogs=$asr_dir/exp/lstm/decode/test/recogs-test-modified_beam_search-epoch-15-avg-5-beam-4.txt

lang=data/lang_bpe_$vocab_size
train_cuts=data/fbank/${prefix}_cuts_train.jsonl.gz
dev_cuts=data/fbank/${prefix}_cuts_dev.jsonl.gz
test_cuts=data/fbank/${prefix}_cuts_test.jsonl.gz
mkdir -p exp
timing=exp/timing.tsv
. utils/stage_utils.sh $timing   # stage_done N name: the stage's wall time into $timing

# the variants trained before the operating point is chosen: name -> config, overrides, epochs
variants="dense-ft"
for l in $sw_left_contexts; do variants="$variants sw-lc$l"; done
for w in $cost_weights; do variants="$variants amortized-cw$w"; done
for w in $kd_cost_weights; do variants="$variants amortized-kd-cw$w"; done
for w in $joint_cost_weights; do variants="$variants joint-cw$w"; done
gated=$(for v in $variants; do case $v in amortized-*|joint-*) echo $v ;; esac; done)
variant_config() {
  case $1 in
    dense-ft|static-*) echo conf/dense_continue.yaml ;;
    sw-lc*) echo conf/sliding_window.yaml ;;
    amortized-kd-*) echo conf/amortized_distill.yaml ;;
    joint-*) echo conf/amortized_joint.yaml ;;
    *) echo conf/amortized.yaml ;;
  esac
}
variant_set() {
  case $1 in
    sw-lc*) echo "--set model.encoder.left_context=${1#sw-lc}" ;;
    amortized-cw*) echo "--set model.encoder.cost_weight=${1#amortized-cw}" ;;
    # the teacher is the dense reference after its own fine-tune (stage 2)
    amortized-kd-cw*) echo "--set model.encoder.cost_weight=${1#amortized-kd-cw} --set distill.teacher=exp/dense-ft/epoch-$ft_epochs.pt" ;;
    joint-cw*) echo "--set model.encoder.cost_weight=${1#joint-cw}" ;;
    # the modules the gated model runs on fewer than half of the dev frames (stage 6)
    static-*) echo "--set model.encoder.static_skip=$(cat exp/$1/static_skip)" ;;
  esac
}
variant_epochs() {  # joint models train from scratch as long as the reference did in all (dense + fine-tune)
  case $1 in joint-*) echo $((dense_epochs + ft_epochs)) ;; *) echo $ft_epochs ;; esac
}
variant_suffix() {
  python -m serac.bin.decode --print-suffix --method $decode_method --beam $beam --epoch $(variant_epochs $1) --avg $avg
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
decode_set() {  # decode_set SET CUTS VARIANT...: $decode_method, executed FLOPs and module use per utterance
  local set=$1 cuts=$2 v; shift 2
  for v in "$@"; do
    steps/decode.sh --cmd "$decode_cmd" --nj 1 --num-threads $decode_threads --epoch $(variant_epochs $v) --avg $avg \
      --method $decode_method --beam $beam exp/$v $lang $cuts $set
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

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: joint training from scratch (gate warm-up, cost ramp), cost weights: ${joint_cost_weights:-none}"
  for w in $joint_cost_weights; do
    v=joint-cw$w
    steps/train.sh --cmd "$train_cmd" --train-config $(variant_config $v) --num-epochs $(variant_epochs $v) \
      --num-threads $joint_threads --train-opts "$(variant_set $v)" $lang $train_cuts $dev_cuts exp/$v
  done
  stage_done 4 joint
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode dev ($decode_method): model selection"
  decode_set dev $dev_cuts $variants
  stage_done 5 decode-dev
fi

# the operating point, chosen on dev, and its static baseline (stage 6 writes exp/chosen)
chosen=
if [ -n "$gated" ] && [ $stop_stage -ge 6 ]; then
  if [ $stage -le 6 ] || [ ! -f exp/chosen ]; then
    python local/operating_point.py select --reference exp/dense-ft --set dev --max-rel-wer $max_rel_wer \
      --suffix "$(variant_suffix dense-ft)" $(for v in $gated; do echo "--model $v=exp/$v:$(variant_epochs $v)"; done) \
      > exp/chosen.tmp
    mv exp/chosen.tmp exp/chosen
  fi
  chosen=$(cat exp/chosen)
  variants="$variants static-$chosen"
fi
if [ $stage -le 6 ] && [ $stop_stage -ge 6 ] && [ -n "$chosen" ]; then
  echo "Stage 6: operating point on dev: $chosen; its static baseline static-$chosen (majority decisions on dev)"
  mkdir -p exp/static-$chosen
  python local/operating_point.py static-skip \
    exp/$chosen/decode/dev/compute-dev-$(variant_suffix $chosen).tsv > exp/static-$chosen/static_skip
  echo "static-$chosen drops $(cat exp/static-$chosen/static_skip)"
  fine_tune static-$chosen
  decode_set dev $dev_cuts static-$chosen
  stage_done 6 static
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: decode test ($decode_method), executed encoder FLOPs and module use per utterance"
  decode_set test $test_cuts $variants
  stage_done 7 decode-test
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "Stage 8: encoder CPU time on test vs dense (one process, 1 thread, models interleaved per batch)"
  models=""
  for v in $variants; do models="$models --model $v=exp/$v:$(variant_epochs $v):$avg"; done
  $decode_cmd --num-threads 1 exp/log/time_encoders.log \
    python -m serac.bin.time_encoders --cuts $test_cuts --lang-dir $lang $models --reference dense-ft \
    --repeats $timing_repeats --num-threads 1 --out exp/encoder-time.json
  cat exp/encoder-time.tsv
  stage_done 8 timing
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  echo "Stage 9: per-cohort WER ($cohort_keys)"
  for v in $variants; do
    d=exp/$v/decode/test suffix=$(variant_suffix $v)
    if [ -f $d/cohorts-$suffix/cohort-summary-${cohort_keys%%,*}.json ] && \
       [ $d/cohorts-$suffix/cohort-summary-${cohort_keys%%,*}.json -nt $d/recogs-test-$suffix.txt ]; then
      echo "$d/cohorts-$suffix is up to date"; continue
    fi
    steps/score_cohorts.sh --cmd "$decode_cmd" --keys $cohort_keys --n-bootstrap $n_bootstrap \
      $d/recogs-test-$suffix.txt $test_cuts $d/cohorts-$suffix > /dev/null
  done
  stage_done 9 cohorts
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  echo "Stage 10: $results"
  models=""
  for v in $variants; do models="$models --model $v=exp/$v:$(variant_epochs $v)"; done
  python local/write_results.py $models --reference dense-ft --init exp/dense \
    --suffix $(variant_suffix dense-ft) --max-rel-wer $max_rel_wer \
    --cuts $test_cuts --timing exp/encoder-time.json --stage-timing $timing --compute-key $compute_keys \
    --plot results/wer-vs-compute.png --command "cd egs/synth_assistant/amortized && ./run.sh" \
    ${lstm_recogs:+--baseline "asr-lstm=$lstm_recogs"} --n-bootstrap $n_bootstrap --out $results
  echo "wrote $results"
fi
echo "$0: succeeded"
