# Sourced by every recipe (egs/*/*/path.sh is a symlink to this file) and by steps/*.sh.
# Activates the project's .venv, creating it on first use with tools/install.sh.
SERAC_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
export SERAC_ROOT
if [ ! -f "$SERAC_ROOT/.venv/.serac-installed" ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    # never build an environment inside a cluster job: every node would race to do it
    echo "path.sh: $SERAC_ROOT/.venv is missing; run tools/install.sh on a login node first" >&2
    return 1 2>/dev/null || exit 1
  fi
  # Two shells sourcing path.sh at once (two recipes, or a recipe and tests/run.sh) must not both install into
  # the same venv: the first takes an exclusive lock next to the (resolved) venv and installs, the others wait
  # for it and then find its marker. SERAC_INSTALL_SCRIPT replaces tools/install.sh (the tests use a stub).
  (
    SERAC_INSTALL_LOCK=$(readlink -f "$SERAC_ROOT/.venv").install.lock
    export SERAC_INSTALL_LOCK  # tools/install.sh takes the same lock unless its caller holds it
    exec 9>"$SERAC_INSTALL_LOCK"
    if ! flock -n 9; then
      echo "path.sh: another install holds $SERAC_INSTALL_LOCK; waiting for it to finish" >&2
      flock 9
    fi
    if [ ! -f "$SERAC_ROOT/.venv/.serac-installed" ]; then
      echo "path.sh: no $SERAC_ROOT/.venv yet; running tools/install.sh (first use only)" >&2
      bash "${SERAC_INSTALL_SCRIPT:-$SERAC_ROOT/tools/install.sh}" >&2
    fi
  ) || { echo "path.sh: installing $SERAC_ROOT/.venv failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export VIRTUAL_ENV=$SERAC_ROOT/.venv
export PATH=$SERAC_ROOT/.venv/bin:$SERAC_ROOT/utils:$PATH
export PYTHONPATH=$SERAC_ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export LC_ALL=C
