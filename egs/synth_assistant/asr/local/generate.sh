#!/usr/bin/env bash
# Generate serac's synthetic multi-accent voice-assistant corpus (espeak-ng speakers living at
# real US zip codes) and its lhotse manifests <manifest-dir>/<prefix>_{recordings,supervisions}_
# {train,dev,test,adapt}.jsonl.gz.
#
# Re-runnable: does nothing when the merged manifests exist. A killed run resumes: finished
# shards are skipped and audio files already written are reused. The same seed gives the same
# corpus, bit for bit, whatever --nj is.

set -euo pipefail
echo "$0 $@"

num_speakers=        # training speakers (empty: the config's default, 150)
utts_per_speaker=    # utterances per train/adapt speaker (empty: 24)
hours=               # hours of training audio (sets utts_per_speaker)
eval_utts_per_speaker=  # utterances per dev/test speaker (empty: 12)
seed=1
nj=4
cmd=utils/run.py
synth_config=        # YAML deep-merged over the default priors (serac/data/synth/config.py)
prefix=synth
audio_format=flac
extra_opts=          # more generate_synth_corpus options, e.g. "--dev-speakers 8 --test-speakers 8"

help_message="Usage: $0 [options] <out-dir> <manifest-dir>
Generates the synthetic corpus into <out-dir> (audio, shards, speakers.tsv) and writes
<manifest-dir>/<prefix>_{recordings,supervisions}_{train,dev,test,adapt}.jsonl.gz.
 e.g.: $0 --nj 4 --cmd \"\$train_cmd\" download/synth data/manifests
Options:
  --num-speakers <n>           # training speakers (default: 150)
  --utts-per-speaker <n>       # utterances per train/adapt speaker (default: 24)
  --hours <h>                  # hours of training audio instead of --utts-per-speaker
  --eval-utts-per-speaker <n>  # utterances per dev/test speaker (default: 12)
  --seed <s>                   # corpus seed (default: $seed)
  --nj <n>                     # parallel jobs / shards (default: $nj)
  --cmd <cmd>                  # job launcher, e.g. \"\$train_cmd\" (default: $cmd)
  --synth-config <yaml>        # YAML overrides of the generative priors (--config is the
                               # usual Kaldi shell file of option assignments)
  --prefix <name>              # manifest prefix (default: $prefix)
  --audio-format <flac|wav>    # (default: $audio_format)
  --config <file>              # shell file of option assignments (utils/parse_options.sh)"

[ -f ./path.sh ] && . ./path.sh
. utils/parse_options.sh

if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
out_dir=$1
manifest_dir=$2

opts=(--seed "$seed" --audio-format "$audio_format")
if [ -n "$num_speakers" ]; then opts+=(--num-speakers "$num_speakers"); fi
if [ -n "$utts_per_speaker" ]; then opts+=(--utts-per-speaker "$utts_per_speaker"); fi
if [ -n "$hours" ]; then opts+=(--hours "$hours"); fi
if [ -n "$eval_utts_per_speaker" ]; then opts+=(--eval-utts-per-speaker "$eval_utts_per_speaker"); fi
if [ -n "$synth_config" ]; then opts+=(--config "$synth_config"); fi
# shellcheck disable=SC2206  # word splitting of the extra options is intended
if [ -n "$extra_opts" ]; then opts+=($extra_opts); fi

complete=true
for split in train dev test adapt; do
  for type in recordings supervisions; do
    [ -f "$manifest_dir/${prefix}_${type}_${split}.jsonl.gz" ] || complete=false
  done
done
if $complete; then
  # the corpus these options describe (speakers, utterances, accents, regions per split) must be the one there:
  # a corpus made with other sizes (e.g. before a default changed) is an error, not silently reused
  if [ -f "$out_dir/log/summary.json" ]; then
    planned=$(python -m serac.bin.generate_synth_corpus --out-dir "$out_dir" --summary "${opts[@]}")
    if [ "$planned" != "$(cat "$out_dir/log/summary.json")" ]; then
      echo "$0: the corpus in $out_dir / $manifest_dir was generated with other sizes than these options ask for:" >&2
      python - "$out_dir/log/summary.json" "$planned" >&2 <<'PY'
import json, sys
have, want = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
for split in sorted(set(have) | set(want)):
    h, w = have.get(split, {}), want.get(split, {})
    if h != w:
        print(f"  {split}: {h.get('speakers')} speakers / {h.get('utterances')} utterances there, "
              f"{w.get('speakers')} / {w.get('utterances')} asked for")
PY
      echo "$0: remove $out_dir, $manifest_dir and the features made from them to generate it anew, or give" \
        "the options that made it (the synth_assistant recipes' prepare.sh before 2026-12-01:" \
        "--dev-speakers 20 --test-speakers 40 --adapt-speakers 3; on 2026-12-01 before the adapt split grew:" \
        "--adapt-speakers 3)" >&2
      exit 1
    fi
  fi
  echo "$0: manifests ${prefix}_*_{train,dev,test,adapt}.jsonl.gz exist in $manifest_dir; skipping"
  exit 0
fi

mkdir -p "$out_dir/log" "$manifest_dir"
python -m serac.bin.generate_synth_corpus --out-dir "$out_dir" --summary "${opts[@]}" \
  > "$out_dir/log/summary.json"
echo "$0: generating $nj shards into $out_dir (sizes in $out_dir/log/summary.json)"

$cmd JOB=1:$nj "$out_dir/log/generate.JOB.log" \
  python -m serac.bin.generate_synth_corpus --out-dir "$out_dir" --job JOB --nj "$nj" "${opts[@]}"

python -m serac.bin.generate_synth_corpus --out-dir "$out_dir" --nj "$nj" --merge \
  --manifest-dir "$manifest_dir" --prefix "$prefix" "${opts[@]}" > "$out_dir/log/merge.log" 2>&1 \
  || { echo "$0: merge failed, see $out_dir/log/merge.log" >&2; tail -n 20 "$out_dir/log/merge.log" >&2; exit 1; }

echo "$0: wrote $manifest_dir/${prefix}_{recordings,supervisions}_{train,dev,test,adapt}.jsonl.gz"
echo "$0: speakers table: $out_dir/speakers.tsv"
echo "$0: succeeded"
