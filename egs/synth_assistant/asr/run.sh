#!/usr/bin/env bash
# synth_assistant/asr: serac's main recipe. A synthetic multi-accent voice-assistant corpus (espeak-ng speakers
# living at real US zip codes, region-dependent accents and acoustics) is generated locally (no download),
# a streaming LSTM transducer is trained on it, and WER is scored per cohort.
#
#   ./run.sh                                  # everything, default size (13 min on 2 idle CPU cores, 2026-12-01)
#   ./run.sh --stage 5 --stop-stage 7         # re-decode, re-score, rewrite RESULTS.md
#   ./run.sh --num-speakers 4000 --nj 64      # a large corpus (about 100 h: see ../README.md)
#   ./run.sh --stage 8 --stop-stage 10        # the encoder comparison (after stages 0-3): RESULTS-encoders.md
#   ./run.sh --stage 8 --stop-stage 10 --compare-epochs 30 --compare-avg 5 --compare-seeds "1 2 3"   # longer: GPU/Slurm
#
# Stages: 0 generate, 1 check manifests, 2 fbank, 3 BPE and a token n-gram LM on the training transcripts,
# 4 train, 5 decode dev/test (greedy, modified beam search, and beam search with LM shallow fusion whose weight
# and blank penalty are tuned on dev), 6 per-cohort scoring (of the LM-fused decode), 7 write RESULTS.md.
# Encoder comparison (not run by default: stop_stage is 7): 8 train the --compare-models (conf/compare/<model>.yaml,
# matched encoder sizes) once per --compare-seeds entry, 9 decode them offline (greedy, beam) and streaming, score the
# worst accent cohort, 10 write RESULTS-encoders.md (mean WER over seeds next to size and cost, ConvRNN-T's paired
# speaker-bootstrap interval against each model, convergence, and the verdict on the paper's claim).
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=7
# corpus: stages 0-3 are ./prepare.sh (../prepare.sh); these options go to it, empty ones keep its defaults
num_speakers=          # training speakers (prepare.sh: 300)
utts_per_speaker=      # utterances per training speaker
hours=                 # alternatively: hours of training audio
seed=                  # corpus seed (prepare.sh: 1)
dev_speakers=          # dev / test speakers before top-ups (prepare.sh: 100 / 250, ~1200 / ~3000 utterances)
test_speakers=
adapt_speakers=        # held-out adapt speakers per region (prepare.sh: 10; the fairness recipe fine-tunes on them)
gen_opts=              # more generator options, e.g. "--dev-speakers 8 --test-speakers 8" (see local/generate.sh)
corpus_dir=            # where the audio goes (prepare.sh: download/synth)
nj=2                   # parallel jobs: corpus generation, features, decoding
# model
train_config=conf/lstm.yaml
exp_dir=exp/lstm
num_epochs=15
avg=5
vocab_size=64
beam=4
lm_order=6             # token n-gram LM on the training transcripts, for shallow fusion in beam search
lm_beam=8
lm_scales="0.6 0.8 1.0"      # tuned on dev (with blank_penalties), the best applied to test; empty: no LM
blank_penalties="1 2 3"
train_threads=2
cohort_keys=accent,gender,age_band,state,region,condition
n_bootstrap=1000
results=RESULTS.md
# encoder comparison (stages 8-10)
compare_models="lstm conv_rnnt conformer contextnet"
compare_config_dir=conf/compare   # <model>.yaml per model (each inherits the main config with `base:`)
compare_exp_dir=exp/compare       # one <model>-seed<S>/ experiment directory per model and seed
compare_seeds="1 2"               # each model trains once per seed (train.seed); the table pools them
compare_converge_gap=5            # convergence: each model's dev greedy WER at epoch E vs E-5 (paired speaker
                                  # bootstrap; still improving if it fell decidably); 0: validation loss instead
compare_converged_pct=2           # (trend) validation loss moved < this % over the last 3 epochs
compare_epochs=15                 # epochs per compared model: two seeds of the four models in about 2 h on 2
compare_avg=5                     # cores (two halves side by side, --train-threads 1 each: docs/encoders.md);
                                  # a converged budget needs more: a GPU or Slurm cluster (docs/encoders.md)
compare_sets="dev test"           # decoded offline (greedy and beam)
streaming_set=test                # decoded streaming
chunk_ms=160                      # streaming chunk; a multiple of every compared encoder's chunk_multiple
compare_cohort_key=accent         # the worst cohort of this attribute goes in the table
compare_results=RESULTS-encoders.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--num-speakers N] [--utts-per-speaker N | --hours H]
          [--seed S] [--dev-speakers N] [--test-speakers N] [--adapt-speakers N] [--nj N] [--train-config YAML] [--exp-dir DIR] [--num-epochs N] [--avg N] [--vocab-size N]
          [--compare-models \"lstm conv_rnnt conformer contextnet\"] [--compare-seeds \"1 2\"] [--compare-epochs N]
          [--compare-avg N] [--compare-converge-gap N] [--compare-converged-pct P] [--compare-config-dir DIR]
          [--chunk-ms MS]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
compare_opts="compare_models compare_seeds compare_config_dir compare_exp_dir compare_epochs compare_avg
  compare_converge_gap compare_converged_pct compare_sets streaming_set chunk_ms compare_cohort_key compare_results
  vocab_size beam n_bootstrap"   # stage 10 writes those that differ from these defaults into the table's command
declare -A compare_default
for v in $compare_opts; do compare_default[$v]=${!v}; done
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

lang=data/lang_bpe_$vocab_size

if [ $stage -le 3 ] && [ $stop_stage -ge 0 ]; then
  # stages 0-3, the corpus preparation every synth_assistant task shares: 0 generate, 1 check manifests,
  # 2 fbank, 3 BPE + token n-gram LM on the training transcripts
  prepare_opts=()
  for v in num_speakers utts_per_speaker hours seed dev_speakers test_speakers adapt_speakers gen_opts corpus_dir; do
    if [ -n "${!v}" ]; then prepare_opts+=(--${v//_/-} "${!v}"); fi
  done
  ./prepare.sh --stage $stage --stop-stage $((stop_stage < 3 ? stop_stage : 3)) ${prepare_opts[@]+"${prepare_opts[@]}"} \
    --nj $nj --vocab-size $vocab_size --lm-order $lm_order
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
      steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $num_epochs --avg $avg --method $method \
        --beam $beam $exp_dir $lang data/fbank/synth_cuts_$set.jsonl.gz $set
    done
  done
  if [ -n "$lm_scales" ]; then
    # shallow fusion: the grid on dev, then the best dev setting on test
    for s in $lm_scales; do
      for bp in $blank_penalties; do
        steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $num_epochs --avg $avg \
          --method modified_beam_search --beam $lm_beam --lm $lang/lm-${lm_order}gram.arpa --lm-scale $s \
          --blank-penalty $bp $exp_dir $lang data/fbank/synth_cuts_dev.jsonl.gz dev
      done
    done
    # the best suffix and the options that repeat it (--lm-scale S --blank-penalty P, from its stats JSON)
    read -r best best_opts < <(python -m serac.bin.pick_decode --decode-dir $exp_dir/decode/dev --set-name dev \
      --pattern "$(python -m serac.bin.decode --print-suffix --method modified_beam_search --epoch $num_epochs \
                    --avg $avg --beam $lm_beam)-lm-*" --with-options \
      --out $exp_dir/decode/lm-tuning-dev.tsv)
    [ -n "$best" ] || { echo "$0: no LM setting picked on dev" >&2; exit 1; }
    echo "$0: best LM setting on dev: $best ($best_opts)"
    steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $num_epochs --avg $avg \
      --method modified_beam_search --beam $lm_beam --lm $lang/lm-${lm_order}gram.arpa $best_opts \
      $exp_dir $lang data/fbank/synth_cuts_test.jsonl.gz test
    echo "$best" > $exp_dir/decode/lm-best.txt
  fi
fi

# per-cohort scoring is of the LM-fused decode chosen on dev (or of plain beam search without an LM)
if [ -n "$lm_scales" ] && [ $stop_stage -ge 6 ] && [ $stage -le 7 ]; then
  [ -f $exp_dir/decode/lm-best.txt ] || { echo "$0: $exp_dir/decode/lm-best.txt missing: run stage 5" >&2; exit 1; }
  suffix=$(cat $exp_dir/decode/lm-best.txt)
else
  suffix=$(python -m serac.bin.decode --print-suffix --method modified_beam_search --epoch $num_epochs --avg $avg \
    --beam $beam)
fi
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
    --cohort-suffix $suffix --seen-text $lang/transcript_words.txt \
    --title "synth_assistant / asr: streaming LSTM transducer" \
    --preamble data/manifests/summary.md --command "cd egs/synth_assistant/asr && ./run.sh" --out $results
fi

compare_suffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $compare_epochs \
  --avg $compare_avg)
converge_set=$(for set in $compare_sets; do [ $set = test ] || { echo $set; break; }; done)  # dev
converge_epoch=$((compare_converge_gap > 0 ? compare_epochs - compare_converge_gap : 0))
if [ $stage -le 10 ] && [ $stop_stage -ge 9 ] && [ $compare_converge_gap -gt 0 ] \
    && { [ $converge_epoch -lt $compare_avg ] || [ -z "$converge_set" ]; }; then
  echo "$0: --compare-converge-gap $compare_converge_gap needs --compare-epochs >= the gap + --compare-avg" \
    "($compare_epochs < $compare_converge_gap + $compare_avg) and a set other than test in --compare-sets" >&2
  exit 1
fi
if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "Stage 8: train the encoder comparison models ($compare_models), seeds $compare_seeds"
  for m in $compare_models; do
    [ -f $compare_config_dir/$m.yaml ] || { echo "$0: no config $compare_config_dir/$m.yaml for model $m" >&2; exit 1; }
  done
  for m in $compare_models; do
    for s in $compare_seeds; do
      steps/train.sh --cmd "$train_cmd" --train-config $compare_config_dir/$m.yaml --num-epochs $compare_epochs \
        --num-threads $train_threads --train-opts "--seed $s" $lang data/fbank/synth_cuts_train.jsonl.gz \
        data/fbank/synth_cuts_dev.jsonl.gz $compare_exp_dir/$m-seed$s
    done
  done
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  echo "Stage 9: decode the comparison models: offline greedy and beam ($compare_sets), streaming ($streaming_set, ${chunk_ms} ms chunks)"
  for m in $compare_models; do
    for s in $compare_seeds; do
      dir=$compare_exp_dir/$m-seed$s
      for set in $compare_sets; do
        for method in greedy_search modified_beam_search; do
          steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $compare_epochs --avg $compare_avg --method $method \
            --beam $beam $dir $lang data/fbank/synth_cuts_$set.jsonl.gz $set
        done
      done
      if [ $converge_epoch -gt 0 ]; then  # the convergence check: dev greedy, $compare_converge_gap epochs earlier
        steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $converge_epoch --avg $compare_avg \
          --method greedy_search $dir $lang data/fbank/synth_cuts_$converge_set.jsonl.gz $converge_set
      fi
      steps/decode_streaming.sh --cmd "$decode_cmd" --nj $nj --epoch $compare_epochs --avg $compare_avg \
        --chunk-ms $chunk_ms $dir $lang data/fbank/synth_cuts_$streaming_set.jsonl.gz $streaming_set
      steps/score_cohorts.sh --cmd "$decode_cmd" --keys $compare_cohort_key --n-bootstrap $n_bootstrap \
        $dir/decode/test/recogs-test-$compare_suffix.txt data/fbank/synth_cuts_test.jsonl.gz \
        $dir/decode/test/cohorts-$compare_suffix
    done
  done
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  echo "Stage 10: write $compare_results"
  exp_dirs=$(for m in $compare_models; do for s in $compare_seeds; do printf "%s," $compare_exp_dir/$m-seed$s; done; done)
  repro="cd egs/synth_assistant/asr && ./run.sh --stage 8 --stop-stage 10"
  for v in $compare_opts; do
    [ "${!v}" = "${compare_default[$v]}" ] && continue
    case ${!v} in *" "*) repro="$repro --${v//_/-} \"${!v}\"" ;; *) repro="$repro --${v//_/-} ${!v}" ;; esac
  done
  python -m serac.bin.write_encoder_table --exp-dirs "${exp_dirs%,}" --sets "${compare_sets// /,}" \
    --epoch $compare_epochs --avg $compare_avg --beam $beam --chunk-ms $chunk_ms --streaming-sets $streaming_set \
    --cohort-set test --cohort-key $compare_cohort_key --claim-sets test \
    --cuts-pattern "data/fbank/synth_cuts_{set}.jsonl.gz" --n-bootstrap $n_bootstrap \
    --converged-pct $compare_converged_pct --converge-epoch $converge_epoch \
    --title "synth_assistant / asr: encoder comparison (ConvRNN-T paper)" \
    --command "$repro" --out $compare_results
fi
# sherpa-onnx (not run by default: --stage 11 --stop-stage 11): the final model exported to ONNX, decoded by
# sherpa-onnx from the audio (it computes the fbank itself), offline and streaming in 160 ms chunks (16 frames);
# the results get a sherpa- suffix next to serac's own (docs/export.md)
if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  echo "Stage 11: export to sherpa-onnx and decode test with it (offline and streaming)"
  sherpa_dir=$exp_dir/sherpa-onnx-epoch-$num_epochs-avg-$avg
  for mode in offline streaming; do
    steps/export.sh --cmd "$train_cmd" --epoch $num_epochs --avg $avg --mode $mode --chunk-frames 16 \
      --sample-rate 16000 $exp_dir $lang $sherpa_dir/$mode
    steps/decode_sherpa.sh --cmd "$decode_cmd" --epoch $num_epochs --avg $avg $sherpa_dir/$mode $exp_dir \
      data/fbank/synth_cuts_test.jsonl.gz test
  done
fi
echo "$0: succeeded"
