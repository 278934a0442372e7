#!/usr/bin/env bash
# voxceleb/sv: serac's speaker-verification recipe on VoxCeleb (for users with the data): the small ECAPA-TDNN
# baseline and the adversarial-reweighting variants of Jin et al. (Interspeech 2022), scored on the VoxCeleb1-O
# trial list overall, by gender and by nationality (USA / UK / other, the paper's grouping).
#
#   ./run.sh --corpus-dir /data/VoxCeleb1                          # VoxCeleb1 dev speakers train, VoxCeleb1-O test
#   ./run.sh --corpus-dir /data/VoxCeleb1 --vox2-dir /data/VoxCeleb2   # the paper's training data (VoxCeleb2)
#   ./run.sh --download true --corpus-dir download/VoxCeleb1       # fetch VoxCeleb1 first (lhotse download_voxceleb1)
#
# The corpus directory is laid out like the real VoxCeleb1: wav/id*/<video>/*.wav, vox1_meta.csv and the trial list
# (veri_test2.txt or voxceleb1_test_v2.txt). Stages: 0 (download if asked and) manifests + trials via lhotse's
# VoxCeleb recipe, 1 fbank, 2 train the baseline, 3 train the ARW variants, 4 score the trials, 5 RESULTS.md.
# Scale train.steps (conf/ecapa_small.yaml or --train-steps) and the model to the data: the config is sized for
# a CPU smoke run, not for VoxCeleb's 1,211 (or 7,000+) speakers.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=5
corpus_dir=           # VoxCeleb1 root (required)
vox2_dir=             # optional VoxCeleb2 root, added to training
download=false        # true: lhotse download_voxceleb1 into --corpus-dir first
train_config=conf/ecapa.yaml
train_steps=
train_opts=""
variants="aps pl pw"
train_threads=1
nj=2
results=RESULTS.md
help_message="Usage: $0 --corpus-dir DIR [--vox2-dir DIR] [--download true] [--stage N] [--stop-stage M]
          [--train-config YAML] [--train-steps N] [--variants \"aps pl pw\"]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
cmdline="$0 $*"
. utils/parse_options.sh
if [ $# -ne 0 ] || [ -z "$corpus_dir" ]; then echo "$help_message" >&2; exit 1; fi

mkdir -p exp
models="none $variants"
steps_opt=""
[ -n "$train_steps" ] && steps_opt="--set train.steps=$train_steps"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: VoxCeleb manifests and the VoxCeleb1-O trials (lhotse's VoxCeleb recipe)"
  if [ "$download" = true ]; then
    lhotse download voxceleb1 "$corpus_dir"
  fi
  if [ ! -f data/manifests/voxceleb_supervisions_test.jsonl.gz ] || [ ! -f data/trials/vox1-o.tsv ]; then
    opts="--voxceleb1 $corpus_dir --num-jobs $nj"
    [ -n "$vox2_dir" ] && opts="$opts --voxceleb2 $vox2_dir"
    local/prepare_voxceleb.py $opts data/manifests data/trials/vox1-o.tsv
  else
    echo "$0: data/manifests and data/trials/vox1-o.tsv exist; skipping"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: fbank (80 bins, 16 kHz)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $nj \
    data/manifests voxceleb train,test data/fbank
fi

train_model() {  # variant
  $train_cmd --num-threads $train_threads exp/$1/log/train.log \
    python -m serac.bin.train_sv --config $train_config --set arw.variant=$1 $steps_opt $train_opts \
      --num-threads $train_threads --cohort-keys gender,nationality_group \
      --train-cuts data/fbank/voxceleb_cuts_train.jsonl.gz --exp-dir exp/$1
}
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: train the baseline speaker model (no reweighting)"
  train_model none
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: train the ARW variants ($variants)"
  for v in $variants; do train_model $v; done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: score VoxCeleb1-O (overall, by gender, by nationality group)"
  for m in $models; do
    $train_cmd exp/$m/log/embed-vox1-o.log \
      python -m serac.bin.sv_embed --model exp/$m/model.pt --cuts data/fbank/voxceleb_cuts_test.jsonl.gz \
        --out exp/$m/embeddings/vox1-o.npz
    python -m serac.bin.score_sv --trials data/trials/vox1-o.tsv --embeddings exp/$m/embeddings/vox1-o.npz \
      --out-dir exp/$m/score/vox1-o
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: write $results"
  python -m serac.bin.write_sv_results --exp-root exp --models "${models// /,}" --sets vox1-o:nationality_group \
    --title "voxceleb / sv: speaker verification with adversarial reweighting" \
    --command "cd egs/voxceleb/sv && $cmdline" --out $results
  echo "$0: wrote $results"
fi
