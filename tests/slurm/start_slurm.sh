#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost (for tests and for trying utils/slurm.py).
#
# Usage: tests/slurm/start_slurm.sh [--no-install]
#
# Idempotent: installs slurmctld/slurmd/slurm-client/munge with apt-get when missing and we are
# root, writes /etc/slurm/slurm.conf (one node = this machine), starts munged, slurmctld and
# slurmd when they are not running, and waits until `sinfo` shows the node idle.
# Prints "started" on the last line of stdout when it started at least one daemon, "running"
# when everything was already up (tests/conftest.py uses this to decide whether to stop it).
# Exit status: 0 on success; 1 with a message on stderr when Slurm cannot be made to run here.
# Stop it with tests/slurm/stop_slurm.sh.
set -euo pipefail

install=true
if [ "${1:-}" = "--no-install" ]; then install=false; shift; fi
if [ $# -ne 0 ]; then
  echo "Usage: $0 [--no-install]" >&2
  exit 1
fi

die() { echo "$0: $*" >&2; exit 1; }

host=$(hostname -s)
started=false

have_slurm() {
  command -v sbatch >/dev/null && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] \
    && [ -x /usr/sbin/munged ]
}

if ! have_slurm; then
  $install || die "Slurm is not installed and --no-install was given"
  [ "$(id -u)" -eq 0 ] || die "Slurm is not installed and we are not root (cannot apt-get install)"
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get"
  pkgs=(slurmctld slurmd slurm-client munge)
  echo "$0: installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >/tmp/serac-slurm-apt.log 2>&1; then
    apt-get update >>/tmp/serac-slurm-apt.log 2>&1 || true
    apt-get install -y --no-install-recommends "${pkgs[@]}" >>/tmp/serac-slurm-apt.log 2>&1 \
      || die "apt-get install ${pkgs[*]} failed, see /tmp/serac-slurm-apt.log"
  fi
  have_slurm || die "Slurm binaries still missing after apt-get install"
fi

is_running() {  # is_running <pidfile> <process-name>
  local pid
  [ -f "$1" ] && pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# Daemons are ours only if we can manage them; a real cluster's config is left alone.
conf=/etc/slurm/slurm.conf
if [ -f $conf ] && ! grep -q '^# serac-local-slurm' $conf; then
  if sinfo -h -o '%T' 2>/dev/null | grep -q .; then
    echo "$0: $conf is not ours but a Slurm cluster answers; using it" >&2
    echo running
    exit 0
  fi
  die "$conf exists and was not written by this script; refusing to overwrite it"
fi
[ "$(id -u)" -eq 0 ] || {
  sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && { echo running; exit 0; }
  die "need root to configure and start the local Slurm daemons"
}

ncpu=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/slurm
new_conf=$(mktemp)
cat > "$new_conf" <<CONF
# serac-local-slurm: written by tests/slurm/start_slurm.sh; a one-node cluster on localhost.
ClusterName=serac
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default memory per CPU every job asks for the whole node and they run one by one.
DefMemPerCPU=1000
# Without this an impossible request (too much memory, ...) pends forever instead of failing.
EnforcePartLimits=ALL
MinJobAge=3600
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherParams=OverMemoryKill
JobAcctGatherFrequency=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
KillWait=5
InactiveLimit=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${ncpu} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$new_conf" $conf; then
  conf_changed=true
  cp "$new_conf" $conf
  chmod 644 $conf
else
  conf_changed=false
fi
rm -f "$new_conf"

# munge
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if [ ! -f /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then
    runuser -u munge -- mungekey --create >/dev/null 2>&1 || die "cannot create /etc/munge/munge.key"
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
fi
if ! is_running /run/munge/munged.pid munged; then
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start (see /var/log/munge/munged.log)"
  started=true
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munge does not work (see /var/log/munge/munged.log)"

if $conf_changed; then
  # A running daemon with an older config would disagree with the new one: restart it.
  for d in slurmd slurmctld; do
    if is_running /run/slurm/$d.pid $d; then
      kill "$(cat /run/slurm/$d.pid)"
      for _ in $(seq 50); do is_running /run/slurm/$d.pid $d || break; sleep 0.1; done
    fi
  done
fi
if ! is_running /run/slurm/slurmctld.pid slurmctld; then
  /usr/sbin/slurmctld || die "slurmctld failed to start (see /var/log/slurm/slurmctld.log)"
  started=true
fi
if ! is_running /run/slurm/slurmd.pid slurmd; then
  /usr/sbin/slurmd || die "slurmd failed to start (see /var/log/slurm/slurmd.log)"
  started=true
fi

state=
for _ in $(seq 150); do
  state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    down*|drain*|fail*)
      scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
case "$state" in
  idle|mixed|allocated|completing) ;;
  *) die "node $host is not up after 30 s (state '${state:-none}'); see /var/log/slurm/slurm{ctld,d}.log" ;;
esac

echo "$0: Slurm is up on $host ($ncpu CPUs, ${mem_mb} MB)" >&2
if $started; then echo started; else echo running; fi
