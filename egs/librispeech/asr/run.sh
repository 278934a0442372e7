#!/usr/bin/env bash
# librispeech/asr: the ConvRNN-T comparison at the paper's scale (LibriSpeech 960 h; LSTM, ConvRNN-T, streaming
# Conformer and ContextNet transducers of ~30 M encoder parameters each, conf/*.yaml), for sites with GPUs.
#
#   ./run.sh                                           # LibriSpeech from $LIBRISPEECH (local/db.sh), 4 GPUs
#   ./run.sh --corpus-dir /data/LibriSpeech --gpus-per-node 8
#   ./run.sh --download true                           # fetch the parts from OpenSLR first (about 60 GB)
#   ./run.sh --stage 3 --models conv_rnnt --num-nodes 2 # one model, 2 nodes (cmd.sh: utils/slurm.py)
#
# Stages: 0 manifests (lhotse's librispeech recipe; download only with --download true), 1 fbank (80 bins,
# speed perturbation 0.9/1.1 of the training parts) and the combined train/dev sets, 2 BPE 500,
# 3 train --models, 4 decode --test-sets (greedy, modified beam search, streaming), 5 RESULTS.md.
# Every stage skips the work it finds done.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=5
corpus_dir=          # the LibriSpeech directory (holding train-clean-100, dev-clean, ...); empty: $LIBRISPEECH
download=false       # true: download missing parts into $dl_dir with lhotse.recipes.download_librispeech
dl_dir=download
train_parts="train-clean-100 train-clean-360 train-other-500"
dev_parts="dev-clean dev-other"
test_sets="test-clean test-other"
speed_perturb=0.9,1.1  # empty: no speed perturbation
fbank_jobs=8
vocab_size=500
models="lstm conv_rnnt conformer contextnet"
num_epochs=30
avg=10
gpus_per_node=4      # 0: train on CPU ($train_cmd); otherwise $cuda_cmd with one process per GPU
num_nodes=1
train_threads=4      # torch threads per training process
train_opts=""        # passed to serac.bin.train, e.g. "--set optim.lr=1e-3"
decode_nj=8
beam=4
chunk_ms=160         # streaming chunk: a multiple of every model's chunk_multiple (the conformer's is 160 ms)
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--corpus-dir DIR] [--download true|false]
          [--train-parts \"...\"] [--dev-parts \"...\"] [--test-sets \"...\"] [--speed-perturb 0.9,1.1|'']
          [--vocab-size N] [--models \"lstm conv_rnnt conformer contextnet\"] [--num-epochs N] [--avg N]
          [--gpus-per-node N] [--num-nodes N] [--train-opts \"--set k=v ...\"] [--decode-nj N] [--chunk-ms MS]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. "$SERAC_ROOT/local/db.sh"
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

[ -z "$corpus_dir" ] && corpus_dir=$LIBRISPEECH
# accept the directory above LibriSpeech/ too (where download_librispeech puts it)
[ -d "$corpus_dir/LibriSpeech" ] && corpus_dir=$corpus_dir/LibriSpeech
all_parts="$train_parts $dev_parts $test_sets"
lang=data/lang_bpe_$vocab_size
comma() { echo "$*" | tr ' ' ','; }

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: lhotse manifests ($all_parts)"
  missing=""
  for part in $all_parts; do
    [ -f data/manifests/librispeech_supervisions_$part.jsonl.gz ] && continue
    [ -d "$corpus_dir/$part" ] || missing="$missing $part"
  done
  if [ -n "$missing" ]; then
    if [ "$download" != true ]; then
      echo "$0: LibriSpeech parts not found in $corpus_dir:$missing" >&2
      echo "$0: set --corpus-dir (or LIBRISPEECH in local/db.sh), or pass --download true to fetch them" >&2
      exit 1
    fi
    python local/download.py --target-dir "$dl_dir" --parts "$missing"
    corpus_dir=$dl_dir/LibriSpeech
  fi
  todo=""
  for part in $all_parts; do
    if [ -f data/manifests/librispeech_supervisions_$part.jsonl.gz ]; then
      echo "data/manifests/librispeech_supervisions_$part.jsonl.gz exists, skipping"
    else
      todo="$todo -p $part"
    fi
  done
  if [ -n "$todo" ]; then
    $train_cmd --num-threads $fbank_jobs data/manifests/log/prepare.log \
      lhotse prepare librispeech -j $fbank_jobs $todo "$corpus_dir" data/manifests
    for part in $all_parts; do
      [ -f data/manifests/librispeech_supervisions_$part.jsonl.gz ] ||
        { echo "$0: lhotse wrote no manifest for $part (see data/manifests/log/prepare.log)" >&2; exit 1; }
    done
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: fbank (80 bins, 16 kHz; speed perturbation '${speed_perturb}' of the training parts)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $fbank_jobs \
    --speed-perturb-train "$speed_perturb" data/manifests librispeech "$(comma $all_parts)" data/fbank
  for set in train dev; do
    out=data/fbank/librispeech_cuts_$set.jsonl.gz
    if [ -f $out ]; then echo "$out exists, skipping"; continue; fi
    parts=$train_parts; [ $set = dev ] && parts=$dev_parts
    inputs=$(for p in $parts; do printf "data/fbank/librispeech_cuts_%s.jsonl.gz " $p; done)
    $train_cmd data/fbank/log/combine_$set.log python local/combine_cuts.py --shuffle $out $inputs
  done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: BPE ($vocab_size)"
  steps/prepare_lang.sh --kind bpe --vocab-size $vocab_size data/fbank/librispeech_cuts_train.jsonl.gz $lang
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: train ($models) on $gpus_per_node GPU(s) x $num_nodes node(s)"
  cmd=$cuda_cmd; [ "$gpus_per_node" -eq 0 ] && cmd=$train_cmd
  for m in $models; do
    [ -f conf/$m.yaml ] || { echo "$0: no config conf/$m.yaml for model $m" >&2; exit 1; }
    steps/train.sh --cmd "$cmd" --train-config conf/$m.yaml --num-epochs $num_epochs --num-threads $train_threads \
      --gpus-per-node $gpus_per_node --num-nodes $num_nodes --train-opts "$train_opts" \
      $lang data/fbank/librispeech_cuts_train.jsonl.gz data/fbank/librispeech_cuts_dev.jsonl.gz exp/$m
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: decode $test_sets (greedy, modified beam search, streaming in ${chunk_ms} ms chunks)"
  for m in $models; do
    for set in $test_sets; do
      for method in greedy_search modified_beam_search; do
        steps/decode.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg --method $method \
          --beam $beam exp/$m $lang data/fbank/librispeech_cuts_$set.jsonl.gz $set
      done
      steps/decode_streaming.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg \
        --chunk-ms $chunk_ms exp/$m $lang data/fbank/librispeech_cuts_$set.jsonl.gz $set
    done
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: write $results"
  exp_dirs=$(for m in $models; do printf "exp/%s," $m; done)
  python -m serac.bin.write_encoder_table --exp-dirs "${exp_dirs%,}" --sets "$(comma $test_sets)" \
    --epoch $num_epochs --avg $avg --beam $beam --chunk-ms $chunk_ms --streaming-sets "$(comma $test_sets)" \
    --cohort-key "" --claim-sets "$(comma $test_sets)" --cuts-pattern "data/fbank/librispeech_cuts_{set}.jsonl.gz" \
    --title "librispeech / asr: encoder comparison (ConvRNN-T paper scale)" \
    --command "cd egs/librispeech/asr && ./run.sh" --out $results
fi
echo "$0: succeeded"
