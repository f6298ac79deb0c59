#!/usr/bin/env bash
# A one-node Slurm on this machine, from Debian's packages, for running the slurm profile for real
# (tests/test_slurm.py; docs/cluster.md). Root only: slurmd starts jobs as their user.
#
#   scripts/local-slurm.sh install   # apt-get install munge slurmctld slurmd slurm-client
#   scripts/local-slurm.sh up        # start munged, slurmctld, slurmd; wait for the node to be idle
#   scripts/local-slurm.sh status    # daemons and sinfo; exit 0 when up, 3 when not
#   scripts/local-slurm.sh down      # stop what `up` started (jobs are cancelled)
#
# Every command is idempotent: `up` on a running cluster and `down` on a stopped one do nothing.
# The node has this machine's CPUs (nproc) and its memory less 1 GiB, in one partition, `local`.
# No accounting (no slurmdbd, no MariaDB): snakemake-executor-plugin-slurm reads job states with
# `squeue` (status_command: squeue), which sees finished jobs for MinJobAge (here 3600 s).
# The config is /etc/slurm/slurm.conf, where every Slurm command looks: SLURM_CONF would not do,
# since the executor plugin's job step drops SLURM_* variables before its nested srun. `up` refuses
# to replace a slurm.conf it did not write; `down` removes the one it wrote. State, logs and pid
# files live in $DWNAS_SLURM_DIR (default /tmp/dwnas-slurm).
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin  # munged, slurmctld, slurmd

DIR=${DWNAS_SLURM_DIR:-/tmp/dwnas-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by scripts/local-slurm.sh"
NODE=$(hostname -s)
PARTITION=local
PACKAGES=(munge slurmctld slurmd slurm-client)

die() { echo "error: $*" >&2; exit 1; }
say() { echo "local-slurm: $*"; }

alive() {  # alive PIDFILE: the process the file names is running
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (slurmd runs jobs as their user; munged's key is root's)"
}

installed() {
  command -v munged >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null
}

cmd_install() {
  if installed; then say "installed: $(slurmctld -V)"; return 0; fi
  need_root install
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; }
  installed || die "apt-get install ${PACKAGES[*]} did not provide munged, slurmctld, slurmd, sbatch"
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  mkdir -p "$DIR/state" "$DIR/spool" "$(dirname "$CONF")"
  cat > "$CONF.new" <<EOF
$MARK (state in $DIR): one node ($NODE), $cpus CPUs, $mem MB.
ClusterName=dwnas-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.new" "$CONF"
}

ours() { [ -f "$CONF" ] && head -n1 "$CONF" | grep -qF "$MARK"; }

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1; }

cmd_up() {
  installed || die "Slurm is not installed (munged, slurmctld, slurmd, sbatch): run" \
    "'scripts/local-slurm.sh install' (apt-get install ${PACKAGES[*]})"
  need_root up
  if [ -e "$CONF" ] && ! ours; then
    die "$CONF exists and was not written by this script: this machine has a Slurm of its own"
  fi
  mkdir -p "$DIR"
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && [ "$(node_state)" = idle ]; then
    say "already up ($CONF)"; return 0
  fi
  write_conf
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$DIR/munged.started"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
  fi
  alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  alive "$DIR/slurmd.pid" || slurmd -f "$CONF" -N "$NODE"
  local state=""
  for _ in $(seq 120); do
    state=$(node_state)
    case "$state" in
      idle|mixed|allocated) break ;;
      down*|drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  case "$state" in
    idle|mixed|allocated) say "up: node $NODE $state, partition $PARTITION ($CONF)" ;;
    *) die "node $NODE is '${state:-unknown}' after 60 s (logs: $DIR/slurmctld.log, $DIR/slurmd.log)" ;;
  esac
}

stop() {  # stop NAME PIDFILE
  if alive "$2"; then
    local pid; pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    say "stopped $1"
  fi
  rm -f "$2"
}

cmd_down() {
  [ -d "$DIR" ] || { say "not running"; return 0; }
  need_root down
  if alive "$DIR/slurmctld.pid"; then scancel --full --quiet --partition "$PARTITION" 2>/dev/null || true; fi
  stop slurmd "$DIR/slurmd.pid"
  stop slurmctld "$DIR/slurmctld.pid"
  if [ -e "$DIR/munged.started" ]; then
    stop munged /run/munge/munged.pid
    rm -f "$DIR/munged.started"
  fi
  rm -rf "$DIR/state" "$DIR/spool"  # the next `up` starts with no jobs
  if ours; then rm -f "$CONF"; fi
  say "down"
}

cmd_status() {
  local up=0
  for d in slurmctld slurmd; do
    if alive "$DIR/$d.pid"; then say "$d running (pid $(cat "$DIR/$d.pid"))"; else say "$d not running"; up=3; fi
  done
  if [ "$up" = 0 ]; then sinfo -N -o "%N %P %T %c %m"; fi
  return $up
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
