#!/usr/bin/env bash
# synth_assistant/fairness: "Fairness I" of serac: cohort discovery (Dheram et al., Interspeech 2022), elastic
# weight consolidation for regional disparities (Trinh et al., Interspeech 2022) and adversarial reweighting (ARW,
# Lahoti et al. 2020) of transducer training, on the baseline of the asr recipe next door (its data and exp are
# used read only).
#
#   (cd ../asr && ./run.sh)                  # first: the baseline (./run.sh --stop-stage 4 is enough here)
#   ./run.sh                                  # everything here (RESULTS.md has the timing of each stage; stage 7,
#                                             # ARW from scratch, is as long as the baseline's training: ~1 h on 2 busy cores)
#   ./run.sh --stage 9                        # rewrite the tables and RESULTS.md
#   ./run.sh --ewc-lambdas "100 1000 10000" --stage 5    # another lambda sweep (then stages 6-9)
#   ./run.sh --stage 7 --arw-config conf/my-arw.yaml --arw-exp exp/arw-mine   # another ARW setting (then 8, 9)
#   ./run.sh --embedding fbank-stats --stage 1  # automatic cohorts from another speaker embedding
#   ./run.sh --target-key geo_region --stage 3   # adapt on the geographic tree's worst leaves instead (its own
#                                             # sets, fine-tunings and RESULTS-geo_region.md; stages 0-2 are shared)
#   ./run.sh --target-key auto_cohort --variants "oversample cohortemb" --stage 3   # mitigate for the discovered
#                                             # bottom cohort (Dheram et al.): the automatic cohort worst on dev
#                                             # (auto_cohort) or the geodemographic one (geodemo); RESULTS-<key>.md
#                                             # has every discovery's bottom/top gap on test before and after,
#                                             # beside the paper's
#
# Finished outputs are skipped on a re-run; after retraining the baseline start afresh: rm -rf exp data
#
# Stages: 0 data (the corpus of ../asr linked by ./prepare.sh), 1 cohort discovery fitted on dev, applied to test
# (first, unless --speaker-model is given, serac's speaker-embedding model for the automatic cohorts, trained on
# the training speakers only), 2 per-cohort scoring of the baseline with the discovered cohort maps + discovery
# table, 3 target regions and training sets, 4 theta* and the Fisher, 5 fine-tune every variant, 6 decode test,
# 7 ARW: the baseline's model trained from scratch with reweighting (same data and epochs, one process), 8 decode
# ARW on dev and test as the baseline is decoded + per-cohort scoring, 9 tables and RESULTS.md.
set -euo pipefail
echo "$0 $*"
cmdline=./run.sh   # the options that make this run, for RESULTS.md (not --stage / --stop-stage / --nj; quoted)
skip_next=false
for a in "$@"; do
  if $skip_next; then skip_next=false; continue; fi
  case $a in
    --stage|--stop-stage|--nj) skip_next=true ;;
    *" "*) cmdline="$cmdline \"$a\"" ;;
    *) cmdline="$cmdline $a" ;;
  esac
done

stage=0
stop_stage=9
asr_dir=../asr               # the baseline recipe (read only)
baseline_exp=exp/lstm        # relative to asr_dir
baseline_epoch=15            # as ../asr/run.sh (its num_epochs and avg)
baseline_avg=5
vocab_size=64
prefix=synth
# discovery (fitted on dev, evaluated on test)
geo_max_leaves=8
min_speakers=3               # smallest discovered cohort on dev (geo tree leaves, geodemographic sides)
min_words=150
embedding=serac              # serac (our speaker-embedding model) | resemblyzer | fbank-stats | auto
compare_embeddings=fbank-stats   # the automatic cohorts also from these embeddings, for the table (empty: none)
speaker_model=               # serac speaker-embedding checkpoint (e.g. ../sv/exp/none/model.pt); empty: train
                             # one in stage 1 into exp/speaker on the training speakers (never dev/test speakers)
speaker_config=../sv/conf/ecapa_small.yaml   # that model (the sv recipe's small ECAPA-TDNN, AM-softmax)
speaker_steps=200            # its training steps (the sv recipe trains 400)
num_clusters=6
emb_max_utts=0               # utterances per speaker for the embedding (0: all)
seed=0
# mitigation
target_key=region            # region (census division), or a discovered cohort of stage 1: geo_region (the
                             # tree's leaves), geodemo (the zip partition), auto_cohort (k-means of --embedding)
num_targets=                 # the worst cohorts on dev are targeted (empty: 2 for region / geo_region, 1 (the
                             # bottom cohort) for geodemo / auto_cohort)
variants=                    # the stage 5-6 variants to train and decode (empty: all: finetune finetune-enc
                             # finetune-pred continue oversample cohortemb ewc-<lambda>); cohortemb: the paper's
                             # cohort embedding (model.cohort_embedding) fine-tuned on the continued-training data
oversample_factor=4
ft_config=conf/finetune.yaml
ft_epochs=4
ft_seeds="7 8 9"             # every variant is trained once per seed; tables show the mean (and sd)
ewc_lambdas="1000 10000 100000 1000000 10000000"   # the sweep (the Fisher is per frame: see RESULTS.md); the
                             # lambda reported as EWC's result is chosen on dev (stage 9: lowest dev WER)
# adversarial reweighting, trained from scratch as the baseline was (stages 7-8)
arw_config=conf/arw.yaml     # the baseline's config (base:) plus the arw section
arw_exp=exp/arw
# attributes scored for every system in the tables of stage 9 (with the discovered geo_region, geodemo, auto_cohort)
cohort_keys=accent,region,condition,gender,age_band
fisher_batches=32
fisher_max_duration=40
# Torch threads per process. One: on 2 shared cores, 2-thread LSTM kernels ran 10-17x slower than 1 thread
# whenever another job was busy (measured here), and the fine-tuning runs are tiny.
fisher_threads=1
train_threads=1
emb_threads=1
nj=2                         # parallel decoding jobs
results=                     # default RESULTS.md; RESULTS-<target-key>.md for another --target-key
help_message="Usage: $0 [--stage N] [--stop-stage M] [--asr-dir DIR] [--baseline-exp DIR] [--baseline-epoch E]
          [--baseline-avg A] [--target-key region|geo_region|geodemo|auto_cohort] [--num-targets N]
          [--variants \"finetune oversample ...\"] [--ewc-lambdas \"L1 L2 L3\"]
          [--ft-epochs N] [--embedding serac|resemblyzer|fbank-stats|auto] [--speaker-model PT] [--speaker-steps N]
          [--num-clusters K] [--arw-config YAML] [--arw-exp DIR] [--cohort-keys k1,k2] ..."

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

asr=$(readlink -f "$asr_dir")
disc=exp/discovery
# the cohort map that gives the target key (none: an attribute of the cuts)
case $target_key in
  region) target_map= ;;
  geo_region) target_map=$disc/geo/cohort-map.tsv ;;
  geodemo) target_map=$disc/geodemo/cohort-map.tsv ;;
  auto_cohort) target_map=$disc/auto/cohort-map.tsv ;;
  *) echo "$0: --target-key $target_key: choose region, geo_region, geodemo or auto_cohort" >&2; exit 1 ;;
esac
case $target_key in geodemo|auto_cohort) : "${num_targets:=1}" ;; *) : "${num_targets:=2}" ;; esac
# the fine-tuning variants of stages 5-6 (their training sets: variant_cuts below)
all_variants="finetune finetune-enc finetune-pred continue oversample cohortemb"
for l in $ewc_lambdas; do all_variants="$all_variants ewc-$l"; done
[ -n "$variants" ] || variants=$all_variants
for v in $variants; do
  case " $all_variants " in *" $v "*) continue ;; esac
  echo "$0: --variants: unknown variant $v (choose from: $all_variants)" >&2
  exit 1
done
has_variant() { case " $variants " in *" $1 "*) return 0 ;; esac; return 1; }
case $embedding in serac|resemblyzer|fbank-stats|auto) ;; *)
  echo "$0: --embedding $embedding: choose serac, resemblyzer, fbank-stats or auto" >&2; exit 1 ;; esac
train_speaker=false          # stage 1 trains exp/speaker/model.pt when no --speaker-model is given
if [ -z "$speaker_model" ]; then speaker_model=exp/speaker/model.pt; train_speaker=true; fi
uses_model() { [ "$1" = serac ] || [ "$1" = auto ]; }   # embeddings that use the speaker model
need_model=false
for e in $embedding $compare_embeddings; do uses_model $e && need_model=true; done
if [ $need_model = true ] && [ $train_speaker = false ] && [ ! -f "$speaker_model" ] && [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "$0: --speaker-model $speaker_model: no such file (train one with ../sv/run.sh --stop-stage 2, or leave" \
       "--speaker-model empty to train it here in stage 1)" >&2
  exit 1
fi
[ -f "$arw_config" ] || { echo "$0: --arw-config $arw_config: no such file" >&2; exit 1; }
grep -q "^arw:" "$arw_config" || { echo "$0: --arw-config $arw_config has no arw: section" >&2; exit 1; }
lang=$asr/data/lang_bpe_$vocab_size
data=data/fbank               # the asr recipe's features, linked by ./prepare.sh
bsuffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $baseline_epoch --avg $baseline_avg)
# the mitigation of one target key: its sets, fine-tunings and tables (region: the plain names, as before)
tag=""; [ "$target_key" = region ] || tag="-$target_key"
sets=data/sets$tag ft=exp/ft$tag mit=exp/mitigation$tag bykey=exp/by-key$tag discovered=exp/discovered$tag
[ -n "$results" ] || results=RESULTS$tag.md
mkdir -p exp
timing=exp/timing.tsv
. utils/stage_utils.sh $timing   # stage_done N name: the stage's wall time into $timing
baseline_recogs() {  # baseline_recogs SET: the baseline's greedy decode of SET (the asr recipe's, else ours)
  local f=$asr/$baseline_exp/decode/$1/recogs-$1-$bsuffix.txt
  [ -f "$f" ] || f=exp/baseline/decode/$1/recogs-$1-$bsuffix.txt
  echo "$f"
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: baseline and data from $asr (its corpus linked into data/)"
  for e in $(seq $((baseline_epoch - baseline_avg + 1)) $baseline_epoch); do
    [ -f "$asr/$baseline_exp/epoch-$e.pt" ] || { echo "$0: $asr/$baseline_exp/epoch-$e.pt missing: run $asr/run.sh first" >&2; exit 1; }
  done
  ./prepare.sh --home "$asr" --vocab-size $vocab_size
  for set in dev test; do
    if [ ! -f "$(baseline_recogs $set)" ]; then
      echo "no baseline decode of $set in $asr/$baseline_exp: decoding it into exp/baseline"
      $decode_cmd --num-threads $train_threads exp/baseline/decode/$set/log/decode-$bsuffix.log \
        python -m serac.bin.decode --exp-dir "$asr/$baseline_exp" --lang-dir "$lang" --epoch $baseline_epoch \
        --avg $baseline_avg --cuts $data/${prefix}_cuts_$set.jsonl.gz --set-name $set --num-threads $train_threads \
        --out-dir exp/baseline/decode/$set
    fi
  done
  stage_done 0 data
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: cohort discovery fitted on the baseline's dev decode, applied to test"
  fit="$(baseline_recogs dev) $data/${prefix}_cuts_dev.jsonl.gz"
  ev="--eval-recogs $(baseline_recogs test) --eval-cuts $data/${prefix}_cuts_test.jsonl.gz"
  labels=$data/${prefix}_cuts_adapt.jsonl.gz,$data/${prefix}_cuts_train.jsonl.gz
  steps/discover_cohorts.sh --cmd "$train_cmd" --method given $ev --label-cuts $labels \
    --discover-opts "--given-key region" $fit $disc/region
  steps/discover_cohorts.sh --cmd "$train_cmd" --method geo $ev --label-cuts $labels \
    --discover-opts "--max-leaves $geo_max_leaves --min-speakers $min_speakers --min-words $min_words" $fit $disc/geo
  steps/discover_cohorts.sh --cmd "$train_cmd" --method geodemo $ev --label-cuts $labels \
    --discover-opts "--min-speakers $min_speakers --min-words $min_words" $fit $disc/geodemo
  if [ $need_model = true ] && [ $train_speaker = true ] && [ ! -f "$speaker_model" ]; then
    echo "serac's speaker-embedding model: $speaker_config, $speaker_steps steps on the training speakers"
    $train_cmd --num-threads $emb_threads exp/speaker/log/train.log \
      python -m serac.bin.train_sv --config $speaker_config --set train.steps=$speaker_steps \
      --num-threads $emb_threads --train-cuts $data/${prefix}_cuts_train.jsonl.gz --exp-dir exp/speaker
  fi
  auto_discovery() {  # auto_discovery EMBEDDING OUT_DIR [LABEL_CUTS]: redone when the embedding, the speaker
                      # model or the labelled manifests changed
    local opts="--embedding $1 --num-clusters $num_clusters --seed $seed --max-utts-per-speaker $emb_max_utts" sig
    uses_model $1 && opts="$opts --speaker-model $speaker_model"
    sig="$opts $(uses_model $1 && sha1sum < "$speaker_model" | cut -d ' ' -f 1 || true) labels: ${3:-}"
    local force=false
    [ "$(cat $2/discovery-settings.txt 2>/dev/null)" = "$sig" ] || force=true
    steps/discover_cohorts.sh --cmd "$train_cmd" --method auto $ev --num-threads $emb_threads --force $force \
      ${3:+--label-cuts $3} --discover-opts "$opts" $fit $2
    echo "$sig" > $2/discovery-settings.txt
  }
  # the training and adapt speakers get their nearest centroid too (--target-key auto_cohort targets them)
  auto_discovery $embedding $disc/auto $labels
  for e in $compare_embeddings; do
    [ $e = $embedding ] || auto_discovery $e $disc/auto-$e
  done
  stage_done 1 discovery
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: per-cohort WER of the baseline with the discovered cohort maps; discovery comparison table"
  for set in dev test; do
    steps/score_cohorts.sh --cmd "$decode_cmd" --n-bootstrap 1000 \
      --cohort-map $disc/geo/cohort-map.tsv,$disc/geodemo/cohort-map.tsv,$disc/auto/cohort-map.tsv \
      --keys $cohort_keys,geo_region,geodemo,auto_cohort "$(baseline_recogs $set)" $data/${prefix}_cuts_$set.jsonl.gz \
      $disc/baseline-cohorts-$set
  done
  auto_dirs=(--dir $disc/auto)
  for e in $compare_embeddings; do [ $e = $embedding ] || auto_dirs+=(--dir $disc/auto-$e); done
  python -m serac.bin.compare_methods discovery --dir $disc/region --dir $disc/geo --dir $disc/geodemo \
    "${auto_dirs[@]}" --out-md $disc/comparison.md --out-json $disc/comparison.json > /dev/null
  cat $disc/comparison.md
  stage_done 2 scoring
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: the $num_targets worst $target_key cohorts on dev; adapt pool, continued-training and oversampled sets"
  map_opt=${target_map:+--cohort-map $target_map}
  if [ -n "$target_map" ] && [ ! -f "$target_map" ]; then
    echo "$0: --target-key $target_key: no cohort map $target_map (run stage 1)" >&2; exit 1
  fi
  if [ -f $sets/targets.json ] && { [ -z "$target_map" ] || [ ! "$target_map" -nt $sets/targets.json ]; } && python -c "import json,sys; d=json.load(open('$sets/targets.json'));
sys.exit(0 if (d['key'], d['num_targets'], d['oversample_factor']) == ('$target_key', $num_targets, $oversample_factor) else 1)"; then
    echo "$sets/targets.json is up to date: $(tr '\n' ' ' < $sets/targets.txt)"
  else
    python local/make_adapt_sets.py --dev-recogs "$(baseline_recogs dev)" --dev-cuts $data/${prefix}_cuts_dev.jsonl.gz \
      --key $target_key $map_opt --num-targets $num_targets --adapt-cuts $data/${prefix}_cuts_adapt.jsonl.gz \
      --train-cuts $data/${prefix}_cuts_train.jsonl.gz --oversample-factor $oversample_factor --seed $seed \
      --out-dir $sets
  fi
  if has_variant cohortemb && { [ ! -f $sets/cohortemb.yaml ] || [ $sets/targets.json -nt $sets/cohortemb.yaml ]; }; then
    # the cohort-embedding variant: the continued-training set, dev and test, each cut labelled with its cohort
    python local/label_cuts.py --key $target_key $map_opt --base-config exp/ewc/finetune.yaml \
      --cuts $sets/continue.jsonl.gz:$sets/continue_labelled.jsonl.gz \
      --cuts $data/${prefix}_cuts_dev.jsonl.gz:$sets/dev_labelled.jsonl.gz \
      --cuts $data/${prefix}_cuts_test.jsonl.gz:$sets/test_labelled.jsonl.gz --config-out $sets/cohortemb.yaml
    echo "cohort embedding: $sets/cohortemb.yaml"
  fi
  stage_done 3 sets
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: theta* (the averaged baseline) and its diagonal Fisher on the training data"
  $train_cmd --num-threads $fisher_threads exp/ewc/log/estimate_fisher.log \
    python -m serac.bin.estimate_fisher --exp-dir "$asr/$baseline_exp" --epoch $baseline_epoch --avg $baseline_avg \
    --lang-dir "$lang" --cuts $data/${prefix}_cuts_train.jsonl.gz --num-batches $fisher_batches \
    --max-duration $fisher_max_duration --seed $seed --num-threads $fisher_threads --out-dir exp/ewc
  python local/finetune_config.py exp/ewc/theta_star.pt $ft_config exp/ewc/finetune.yaml
  grep -h "Fisher over" exp/ewc/log/estimate_fisher.log | tail -n 1 || true   # a rerun logs "skipping" only
  stage_done 4 fisher
fi

# variant name -> training manifest and EWC lambda; one experiment directory per variant and seed
# finetune-enc / finetune-pred: plain fine-tuning of the encoder only / the prediction network only (the rest frozen
# for the whole run), beside full fine-tuning
variant_cuts() {
  case $1 in
    finetune*|ewc-*) echo $sets/adapt_pool.jsonl.gz ;;
    cohortemb) echo $sets/continue_labelled.jsonl.gz ;;   # the continued-training data, labelled with cohorts
    *) echo $sets/$1.jsonl.gz ;;
  esac
}
variant_config() { case $1 in cohortemb) echo $sets/cohortemb.yaml ;; *) echo exp/ewc/finetune.yaml ;; esac; }
decode_cuts() {  # decode_cuts VARIANT SET: the cuts it validates on / decodes (a cohort-embedding model reads each
                 # utterance's cohort from its cut)
  case $1 in cohortemb) echo $sets/${2}_labelled.jsonl.gz ;; *) echo $data/${prefix}_cuts_$2.jsonl.gz ;; esac
}
frozen_modules() {  # frozen_modules VARIANT: what a partial fine-tuning keeps still (the transducer's module names;
                    # no spaces: the list travels through --train-opts, which is split on them)
  case $1 in
    finetune-enc) echo "[decoder,joiner,simple_am_proj,simple_lm_proj,ctc_output]" ;;
    finetune-pred) echo "[encoder,joiner,simple_am_proj,ctc_output]" ;;
  esac
}

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: fine-tune from theta*: $variants ($ft_epochs epochs each, seeds $ft_seeds)"
  for s in $ft_seeds; do
    for v in $variants; do
      opts="--init-from exp/ewc/theta_star.pt --seed $s"
      case $v in ewc-*) opts="$opts --set ewc.fisher=exp/ewc/fisher.pt --set ewc.lambda=${v#ewc-}" ;; esac
      frozen=$(frozen_modules $v)
      [ -z "$frozen" ] || opts="$opts --set train.init_freeze_modules=$frozen --set train.init_freeze_steps=1000000000"
      steps/train.sh --cmd "$train_cmd" --train-config $(variant_config $v) --num-epochs $ft_epochs \
        --num-threads $train_threads --train-opts "$opts" \
        "$lang" "$(variant_cuts $v)" $(decode_cuts $v dev) $ft/$v-seed$s
      grep -h "epoch $ft_epochs:" $ft/$v-seed$s/log/train.log | tail -n 1 | cut -d ' ' -f 5- || true
    done
  done
  stage_done 5 finetune
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: decode dev (where lambda is chosen) and test (greedy search) with every variant"
  for s in $ft_seeds; do
    for v in $variants; do
      for set in dev test; do
        steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $ft_epochs --avg 1 --method greedy_search \
          $ft/$v-seed$s "$lang" $(decode_cuts $v $set) $set
      done
    done
  done
  stage_done 6 decode
fi

maps="$disc/geo/cohort-map.tsv,$disc/geodemo/cohort-map.tsv,$disc/auto/cohort-map.tsv"
arw_name="ARW (from scratch)"
if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: ARW: the baseline's model and data trained from scratch with $arw_config ($baseline_epoch epochs)"
  # one process: ARW refuses DDP (serac/train/arw_addon.py)
  steps/train.sh --cmd "$train_cmd" --train-config $arw_config --num-epochs $baseline_epoch --num-threads $train_threads \
    "$lang" $data/${prefix}_cuts_train.jsonl.gz $data/${prefix}_cuts_dev.jsonl.gz $arw_exp
  grep -h "epoch $baseline_epoch:" $arw_exp/log/train.log | tail -n 1 | cut -d ' ' -f 5- || true
  stage_done 7 arw-train
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "Stage 8: decode dev and test with ARW as the baseline (greedy, epoch $baseline_epoch avg $baseline_avg); per-cohort WER"
  for set in dev test; do
    steps/decode.sh --cmd "$decode_cmd" --nj $nj --epoch $baseline_epoch --avg $baseline_avg --method greedy_search \
      $arw_exp "$lang" $data/${prefix}_cuts_$set.jsonl.gz $set
    steps/score_cohorts.sh --cmd "$decode_cmd" --n-bootstrap 1000 --cohort-map $maps \
      --keys $cohort_keys,geo_region,geodemo,auto_cohort $arw_exp/decode/$set/recogs-$set-$bsuffix.txt \
      $data/${prefix}_cuts_$set.jsonl.gz $arw_exp/decode/$set/cohorts-$bsuffix
  done
  stage_done 8 arw-decode
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  echo "Stage 9: mitigation and ARW tables, one per attribute, and $results"
  map_opt=${target_map:+--cohort-map $target_map}
  fsuffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $ft_epochs --avg 1)
  methods=(--method "no adaptation" "$(baseline_recogs test)")
  methods+=(--method "$arw_name" $arw_exp/decode/test/recogs-test-$bsuffix.txt $arw_exp)
  missing=()
  dev_methods=(--method "no adaptation" "$(baseline_recogs dev)")
  dev_methods+=(--method "$arw_name" $arw_exp/decode/dev/recogs-dev-$bsuffix.txt $arw_exp)
  add_method() {  # add_method NAME VARIANT: one --method per seed whose test (dev) decode exists (else named)
    has_variant $2 || return 0
    for s in $ft_seeds; do
      local r=$ft/$2-seed$s/decode/test/recogs-test-$fsuffix.txt d=$ft/$2-seed$s/decode/dev/recogs-dev-$fsuffix.txt
      if [ -f $r ]; then methods+=(--method "$1" $r $ft/$2-seed$s); else missing+=("$2-seed$s"); fi
      if [ -f $d ]; then dev_methods+=(--method "$1" $d $ft/$2-seed$s); else missing+=("$2-seed$s (dev)"); fi
    done
  }
  add_method "fine-tuning" finetune
  add_method "fine-tuning, encoder only" finetune-enc
  add_method "fine-tuning, prediction network only" finetune-pred
  for l in $ewc_lambdas; do add_method "EWC lambda=$l" ewc-$l; done
  add_method "continued training (all data)" continue
  add_method "oversampling x$oversample_factor" oversample
  add_method "cohort embedding ($target_key)" cohortemb
  [ ${#missing[@]} -eq 0 ] || echo "$0: WARNING: no test decode of ${missing[*]} (stages 5-6 not run?): left out of the tables"
  python -m serac.bin.compare_methods mitigation --cuts $data/${prefix}_cuts_test.jsonl.gz --key $target_key $map_opt \
    --targets-file $sets/targets.txt --baseline "no adaptation" --reference "fine-tuning" "${methods[@]}" \
    --from-scratch "$arw_name" --fisher exp/ewc/fisher.pt --theta-star exp/ewc/theta_star.pt \
    --out-md $mit.md --out-json $mit.json > /dev/null
  # every other attribute, and the discovered cohorts: the same table, targeting the baseline's worst cohort on dev
  mkdir -p $bykey
  for key in ${cohort_keys//,/ } geo_region geodemo auto_cohort; do
    [ $key = $target_key ] && continue
    python -m serac.bin.compare_methods mitigation --cuts $data/${prefix}_cuts_test.jsonl.gz --key $key \
      --cohort-map $disc/geo/cohort-map.tsv --cohort-map $disc/geodemo/cohort-map.tsv --cohort-map $disc/auto/cohort-map.tsv \
      --targets-from-summary $disc/baseline-cohorts-dev/cohort-summary-$key.json --baseline "no adaptation" \
      --reference "fine-tuning" "${methods[@]}" --from-scratch "$arw_name" \
      --out-md $bykey/$key.md --out-json $bykey/$key.json > /dev/null
  done
  # every discovery's cohorts (Dheram et al.): its dev-bottom cohort targeted and its dev-ranked bottom/top gap, for
  # the gap before and after mitigation
  mkdir -p $discovered
  for m in geo:geo_region geodemo:geodemo auto:auto_cohort; do
    python -m serac.bin.compare_methods mitigation --cuts $data/${prefix}_cuts_test.jsonl.gz --key ${m#*:} \
      --cohort-map $disc/${m%%:*}/cohort-map.tsv --targets-from-discovery $disc/${m%%:*} --baseline "no adaptation" \
      --reference "fine-tuning" "${methods[@]}" --from-scratch "$arw_name" \
      --out-md $discovered/${m%%:*}.md --out-json $discovered/${m%%:*}.json > /dev/null
  done
  # dev, the set every choice is made on (EWC's lambda: write_results.py): every system, the same table as test's
  python -m serac.bin.compare_methods mitigation --cuts $data/${prefix}_cuts_dev.jsonl.gz --key $target_key $map_opt \
    --targets-file $sets/targets.txt --baseline "no adaptation" --reference "fine-tuning" "${dev_methods[@]}" \
    --from-scratch "$arw_name" --out-md $mit-dev.md --out-json $mit-dev.json > /dev/null
  stage_done 9 results
  python local/write_results.py --asr-dir "$asr" --baseline "$asr/$baseline_exp epoch $baseline_epoch avg $baseline_avg" \
    --discovery $disc --sets $sets/targets.json --fisher exp/ewc/fisher.json --finetune-config exp/ewc/finetune.yaml \
    --mitigation $mit.md --mitigation-json $mit.json --seeds "$ft_seeds" --timing $timing \
    --by-key $bykey --discovered $discovered --dev $mit-dev.json --arw-exp $arw_exp --arw-config $arw_config --arw-name "$arw_name" \
    --missing "${missing[*]}" --speaker-model $speaker_model --attr-cuts $data/${prefix}_cuts_dev.jsonl.gz,$data/${prefix}_cuts_test.jsonl.gz \
    --command "cd egs/synth_assistant/fairness && $cmdline" --out $results
  echo "wrote $results"
fi
echo "$0: succeeded"
