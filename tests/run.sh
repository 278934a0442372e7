#!/usr/bin/env bash
# The single test command (.ci/run calls it). Installs what the tests need, then runs pytest.
#
#   tests/run.sh                 # everything
#   tests/run.sh -k yesno -x     # extra arguments go to pytest
set -euo pipefail
echo "$0 $*"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# System tools the tests use: NIST sclite (WER cross-check), a real local Slurm (munge, slurmctld, slurmd).
need_apt=()
command -v sctk >/dev/null 2>&1 || need_apt+=(sctk)
command -v slurmctld >/dev/null 2>&1 || need_apt+=(slurmctld slurmd slurm-client munge)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[tests] apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 || {
      apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null; }
  else
    echo "[tests] not root: cannot install ${need_apt[*]}; the tests that need them skip (or fail under CI=true)"
  fi
fi

# Python environment (idempotent; the first run builds fast_rnnt and kaldifeat, a few minutes).
bash tools/install.sh
. ./path.sh

set +e
python -m pytest tests -v -ra --durations=15 -p no:cacheprovider "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "[tests] pytest collected no tests" >&2; exit 1; fi
exit $rc
