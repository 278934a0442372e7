#!/usr/bin/env bash
# Stop the local Slurm started by tests/slurm/start_slurm.sh (slurmd, slurmctld, munged), by pid.
#
# Usage: tests/slurm/stop_slurm.sh
#
# Only daemons of a cluster whose /etc/slurm/slurm.conf was written by start_slurm.sh are stopped.
set -euo pipefail
if [ $# -ne 0 ]; then echo "Usage: $0" >&2; exit 1; fi

if [ -f /etc/slurm/slurm.conf ] && ! grep -q '^# serac-local-slurm' /etc/slurm/slurm.conf; then
  echo "$0: /etc/slurm/slurm.conf was not written by start_slurm.sh; not stopping anything" >&2
  exit 1
fi

stop() {  # stop <pidfile> <process-name>
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 0
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "$0: $2 ($pid) did not stop after 10 s; sending SIGKILL" >&2
  kill -9 "$pid" 2>/dev/null || true
}

stop /run/slurm/slurmd.pid slurmd
stop /run/slurm/slurmctld.pid slurmctld
stop /run/munge/munged.pid munged
echo "$0: local Slurm stopped" >&2
