#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages (slurm-wlm, munge), for the tests
# marked `slurm` and for trying `sweep --launcher slurm` without a cluster. Needs root.
#
#   scripts/local_slurm.sh install   apt-get install slurm-wlm munge (when sbatch is missing)
#   scripts/local_slurm.sh start     write the config if there is none, start munged, slurmctld and
#                                    slurmd; prints the pids it started (also in $STATE/pids)
#   scripts/local_slurm.sh stop      stop the daemons this script started, by their pids
#   scripts/local_slurm.sh status    'up' when the controller answers and the node is idle or busy
#
# The cluster listens on the loopback interface only. Its state, logs and pids live in $STATE
# (default /tmp/embeddings-squeeze-slurm). An existing /etc/slurm/slurm.conf that this script did not
# write is used as it is, never replaced.
set -euo pipefail

STATE=${EMBEDDINGS_SQUEEZE_SLURM_STATE:-/tmp/embeddings-squeeze-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by embeddings_squeeze scripts/local_slurm.sh"

say() { echo "local_slurm: $*" >&2; }

install() {
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || { say "installing SLURM needs root"; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        say "using the existing $CONF"
        return
    fi
    local node cpus memory
    node=$(hostname -s)
    cpus=$(nproc)
    memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mkdir -p "$STATE"/{ctld,spool,log} /etc/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
MaxArraySize=1001
KillWait=5
MinJobAge=3600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

status() {
    if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %t 2>/dev/null | grep -Eq "idle|mix|alloc"; then
        echo up
    else
        echo down
        return 1
    fi
}

start() {
    install
    if status >/dev/null 2>&1; then
        say "a cluster is already up; nothing started"
        return
    fi
    write_config
    mkdir -p "$STATE"/{ctld,spool,log}
    : >"$STATE/pids"
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge
        munged --force
        pgrep -x -n munged >>"$STATE/pids"
    fi
    slurmctld -i
    slurmd
    sleep 1
    cat "$STATE/slurmctld.pid" "$STATE/slurmd.pid" >>"$STATE/pids"
    for _ in $(seq 60); do
        if status >/dev/null 2>&1; then
            say "up: node $(hostname -s), pids $(tr '\n' ' ' <"$STATE/pids")"
            return
        fi
        scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
        sleep 1
    done
    say "the cluster did not come up; see $STATE/log/"
    exit 1
}

stop() {
    [ -f "$STATE/pids" ] || { say "nothing started by this script"; return; }
    while read -r pid; do
        kill "$pid" 2>/dev/null || true
    done <"$STATE/pids"
    rm -f "$STATE/pids"
    say "stopped"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) say "usage: $0 install|start|stop|status"; exit 2 ;;
esac
