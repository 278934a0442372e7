# utils/parse_options.sh: command-line options for Kaldi-style scripts.
#
# Sourced (never executed) by a script after it has set the defaults of its options:
#
#   stage=0
#   nj=4
#   use_gpu=false
#   help_message="Usage: $0 [options] <data-dir> <exp-dir>
#   Options:
#     --stage <n>        # first stage to run (default: $stage)
#     --nj <n>           # number of parallel jobs (default: $nj)
#     --use-gpu <bool>   # true|false (default: $use_gpu)
#     --config <file>    # shell file of option assignments, read before the other options"
#   . utils/parse_options.sh
#   if [ $# -ne 2 ]; then echo "$help_message" >&2; exit 1; fi
#
# Rules:
#   --foo-bar VALUE or --foo-bar=VALUE sets the shell variable foo_bar, which must already be
#     defined (an unknown option is an error naming it); a missing value is an error;
#   when the variable's current value is true or false, the new value must be true or false;
#   --config FILE is sourced before any other option is applied, wherever it appears among the
#     options (several --config are sourced in order); later options override what it sets;
#   --help or -h prints $help_message and exits 0;
#   options stop at the first argument that does not start with "--" (or after "--"): the
#     positional arguments are left in "$@";
#   when the script defines stage (and stop_stage), they must be integers with stage <= stop_stage.
# Errors print "$0: ..." to stderr and exit 1. Safe under set -euo pipefail. All helper
# variables are named __po_* and unset before returning.

__po_names=()
__po_values=()
__po_configs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "$help_message"
      else
        echo "$0: no help message (the script sets none)"
      fi
      exit 0 ;;
    --)
      shift
      break ;;
    --*=*)
      __po_name=${1%%=*}
      __po_value=${1#*=}
      shift ;;
    --?*)
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value" >&2
        exit 1
      fi
      __po_name=$1
      __po_value=$2
      shift 2 ;;
    *)
      break ;;
  esac
  __po_var=${__po_name#--}
  __po_var=${__po_var//-/_}
  if ! [[ $__po_var =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "$0: invalid option $__po_name" >&2
    exit 1
  fi
  if [ "$__po_var" = config ]; then
    __po_configs+=("$__po_value")
  else
    __po_names+=("$__po_name")
    __po_values+=("$__po_value")
  fi
done

# --config first, so that options given on the command line override it.
for __po_config in ${__po_configs[@]+"${__po_configs[@]}"}; do
  if [ ! -r "$__po_config" ]; then
    echo "$0: cannot read config file $__po_config (given by --config)" >&2
    exit 1
  fi
  # shellcheck disable=SC1090
  . "$__po_config"
done

__po_i=0
while [ $__po_i -lt ${#__po_names[@]} ]; do
  __po_name=${__po_names[$__po_i]}
  __po_value=${__po_values[$__po_i]}
  __po_var=${__po_name#--}
  __po_var=${__po_var//-/_}
  if [[ $__po_var == __po_* ]] || [ -z "${!__po_var+set}" ]; then
    echo "$0: unknown option $__po_name" >&2
    exit 1
  fi
  case "${!__po_var}" in
    true|false)
      case "$__po_value" in
        true|false) ;;
        *)
          echo "$0: option $__po_name is boolean: its value must be true or false, not '$__po_value'" >&2
          exit 1 ;;
      esac ;;
  esac
  printf -v "$__po_var" '%s' "$__po_value"
  __po_i=$((__po_i + 1))
done

# A recipe's stage range: --stage abc or --stage 9 --stop-stage 2 would otherwise run nothing (or print
# shell errors) and still end in "succeeded".
for __po_var in stage stop_stage; do
  if [ -n "${!__po_var+set}" ] && ! [[ ${!__po_var} =~ ^-?[0-9]+$ ]]; then
    echo "$0: --${__po_var//_/-} must be an integer, not '${!__po_var}'" >&2
    exit 1
  fi
done
if [ -n "${stage+set}" ] && [ -n "${stop_stage+set}" ] && [ "$stage" -gt "$stop_stage" ]; then
  echo "$0: --stage $stage is after --stop-stage $stop_stage: no stage would run" >&2
  exit 1
fi

unset __po_names __po_values __po_configs __po_config __po_name __po_value __po_var __po_i
true
