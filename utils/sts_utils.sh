# Helpers of the STS recipes (egs/synth_assistant/sts, egs/libricss/sts); source after utils/parse_options.sh:
#
#   . utils/sts_utils.sh
#   sts_check_systems "$systems"          # every conf/<system>.yaml exists; init-from systems have their checkpoint
#   opts="$train_opts $(sts_init_opts sts_init)"
#   sts_score exp/sts test greedy_search-epoch-6-avg-2 data/fbank/conv_cuts_test.jsonl.gz $lang 1000 [opts...]
#
# Reads the recipe's $init_from and $init_lang_dir (sts_check_systems fills in the default lang dir) and $gap_s.

sts_needs_init() {  # sts_needs_init NAME: conf/NAME.yaml takes modules from a single-talker model (train.init_modules)
  python -c "import sys; from serac.config import load_config
sys.exit(0 if load_config('conf/$1.yaml')['train']['init_modules'] else 1)"
}

sts_is_floor() {  # sts_is_floor NAME: conf/NAME.yaml trains nothing (train.num_epochs 0): the --init-from model is the
  # system (the single-speaker floor)
  python -c "import sys; from serac.config import load_config
sys.exit(0 if load_config('conf/$1.yaml')['train']['num_epochs'] == 0 else 1)"
}

sts_check_systems() {  # sts_check_systems "SYSTEMS": fail early, naming the system, before any training starts
  local s
  for s in $1; do
    [ -f conf/$s.yaml ] || { echo "$0: no config conf/$s.yaml for system $s" >&2; return 1; }
    if sts_needs_init $s || sts_is_floor $s; then
      [ -n "$init_from" ] && [ -f "$init_from" ] || { echo "$0: system $s starts from a single-talker model:" \
        "give its checkpoint with --init-from (e.g. ../asr/exp/lstm/epoch-15.pt after running ../asr/run.sh);" \
        "got '${init_from}'" >&2; return 1; }
      [ -n "$init_lang_dir" ] || init_lang_dir=$(dirname "$(dirname "$(dirname "$init_from")")")/data/lang_bpe_64
      [ -f "$init_lang_dir/tokens.txt" ] || { echo "$0: $init_lang_dir/tokens.txt not found: give the lang dir" \
        "of $init_from with --init-lang-dir" >&2; return 1; }
    fi
  done
}

sts_init_opts() {  # sts_init_opts NAME: the serac.bin.train options that load a single-talker model, if NAME needs one
  if sts_needs_init $1; then echo "--init-from $init_from --init-lang-dir $init_lang_dir"; fi
}

sts_gap_opt() {  # sts_gap_opt EXP_DIR: how turns are read back: turn tokens, or silences for a system trained without
  # them (MT-RNN-T, the single-talker floor)
  if python -c "import sys, yaml; c = yaml.safe_load(open('$1/config.yaml'))
sys.exit(0 if 'separator' in c['model'] and (c.get('sts') or {}).get('turn_tokens', True) else 1)"
  then echo ""; else echo "--gap-s $gap_s"; fi
}

sts_score() {  # sts_score EXP_DIR SET SUFFIX CUTS LANG N_BOOTSTRAP [score_multitalker options]: score one decode
  local exp=$1 set_name=$2 sfx=$3 cuts=$4 lang_dir=$5 n_boot=$6
  shift 6
  $decode_cmd $exp/decode/$set_name/log/score-$sfx.log python -m serac.bin.score_multitalker \
    --hyps $exp/decode/$set_name/hyps-$set_name-$sfx.jsonl --cuts $cuts --lang-dir $lang_dir \
    --n-bootstrap $n_boot $(sts_gap_opt $exp) "$@"
  echo "$(basename $exp) $set_name: $(sed -n 2p $exp/decode/$set_name/multitalker-$set_name-$sfx.tsv | cut -f 1-8)"
}
