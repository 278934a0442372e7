#!/usr/bin/env bash
# Kaldi data directories in and out of serac's lhotse manifests, with lhotse's own converters
# (`lhotse kaldi import` / `lhotse kaldi export`), under the names the recipes read:
#   <manifest-dir>/<prefix>_recordings_<split>.jsonl.gz and <prefix>_supervisions_<split>.jsonl.gz
#
#   # a Kaldi data dir (wav.scp, text, utt2spk; segments, spk2gender, reco2dur when present) into a recipe:
#   utils/kaldi_data_dir.sh --sampling-rate 16000 import data/train data/manifests synth train
#   ./run.sh --stage 1            # (yesno: --stage 2) the recipe goes on from the manifests
#   # serac's manifests back out to a Kaldi data dir (wav.scp, text, utt2spk, spk2utt, segments, ...):
#   utils/kaldi_data_dir.sh export data/manifests synth test data/kaldi/test
set -euo pipefail
echo "$0 $*"

sampling_rate=16000
num_jobs=1
help_message="Usage: $0 [options] import <kaldi-data-dir> <manifest-dir> <prefix> <split>
       $0 [options] export <manifest-dir> <prefix> <split> <kaldi-data-dir>
Options:
  --sampling-rate <hz>   # import: the audio's sampling rate (a Kaldi data dir does not record it) (default: $sampling_rate)
  --num-jobs <n>         # import: jobs reading recording durations when there is no reco2dur (default: $num_jobs)"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 5 ]; then echo "$help_message" >&2; exit 1; fi
mode=$1
case $mode in
  import)
    data_dir=$2; manifest_dir=$3; prefix=$4; split=$5
    for f in wav.scp text utt2spk; do
      [ -f "$data_dir/$f" ] || { echo "$0: $data_dir/$f not found (a Kaldi data dir needs wav.scp, text, utt2spk)" >&2; exit 1; }
    done
    recordings=$manifest_dir/${prefix}_recordings_$split.jsonl.gz
    supervisions=$manifest_dir/${prefix}_supervisions_$split.jsonl.gz
    if [ -f "$recordings" ] && [ -f "$supervisions" ]; then
      echo "$0: $recordings and $supervisions exist, skipping"; exit 0
    fi
    mkdir -p "$manifest_dir"
    tmp=$(mktemp -d "$manifest_dir/.kaldi_import.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    lhotse kaldi import -j "$num_jobs" "$data_dir" "$sampling_rate" "$tmp"
    for f in recordings supervisions; do
      [ -f "$tmp/$f.jsonl.gz" ] || { echo "$0: lhotse kaldi import wrote no $f manifest from $data_dir" >&2; exit 1; }
    done
    # renames within one file system are atomic: a killed import leaves no half-written manifest under these names
    mv "$tmp/recordings.jsonl.gz" "$recordings"
    mv "$tmp/supervisions.jsonl.gz" "$supervisions"
    echo "$0: $data_dir -> $recordings, $supervisions ($(gunzip -c "$supervisions" | wc -l) utterances)"
    ;;
  export)
    manifest_dir=$2; prefix=$3; split=$4; data_dir=$5
    recordings=$manifest_dir/${prefix}_recordings_$split.jsonl.gz
    supervisions=$manifest_dir/${prefix}_supervisions_$split.jsonl.gz
    for f in "$recordings" "$supervisions"; do
      [ -f "$f" ] || { echo "$0: $f not found" >&2; exit 1; }
    done
    lhotse kaldi export "$recordings" "$supervisions" "$data_dir"
    echo "$0: $recordings, $supervisions -> $data_dir ($(wc -l < "$data_dir/text") utterances)"
    ;;
  *)
    echo "$0: the first argument must be import or export, not '$mode'" >&2; echo "$help_message" >&2; exit 1 ;;
esac
echo "$0: done"
