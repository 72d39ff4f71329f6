#!/usr/bin/env bash
# A real single-node SLURM cluster on 127.0.0.1, for testing profiles/slurm (tests/test_slurm.py).
#
#   ci/slurm_local.sh up      install (apt, only if missing) slurmctld slurmd slurm-client munge,
#                             write a minimal slurm.conf, start munged/slurmctld/slurmd, wait for "idle"
#   ci/slurm_local.sh status  exit 0 when the node answers and is usable (idle/mixed/allocated)
#   ci/slurm_local.sh down    stop exactly the daemons that `up` started (by recorded pid), remove its slurm.conf
#
# Debian 12 (Slurm 22.05), root, no systemd, no cgroups. Recipe A of the team's notes
# (shared/notes/slurm-local.md): no accounting database, so `sacct` fails and job status must be
# polled with squeue (tests/test_slurm.py passes --slurm-status-command squeue).
# Idempotent: `up` twice starts nothing new; `down` without `up` does nothing.
# It refuses to overwrite a slurm.conf it did not write (a machine that is a real SLURM node).
set -euo pipefail

STATE_DIR=${VDWSTACK_SLURM_STATE:-/run/vdwstack-slurm}
PIDS="$STATE_DIR/started.pids" # "name pid" per daemon this script started
CONF=/etc/slurm/slurm.conf
MARK="# written by vdwstack ci/slurm_local.sh"
NODE=localhost
PARTITION=debug

log() { echo "slurm_local: $*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { # alive PID NAME: the pid exists and is that program (guards against pid reuse)
    [ -n "${1:-}" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm")" = "$2" ]
}

pid_from() { [ -s "$1" ] && tr -dc 0-9 <"$1" || true; }

node_state() { timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1 || true; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (apt-get, daemons under /run)"; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching it"
    fi
    local cpus mem_mb
    cpus=$(nproc)
    # RealMemory must not exceed what slurmd detects, or the node is drained: 90 % of MemTotal.
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p /etc/slurm
    cat >"$CONF.tmp" <<EOF
$MARK (single node on 127.0.0.1; safe to delete)
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without a memory request would otherwise get all of RealMemory and block the node
DefMemPerCPU=1000
# squeue-based status polling needs finished jobs visible for >= 3 x the plugin's first-check delay
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -e "$CONF" ] && cmp -s "$CONF.tmp" "$CONF"; then rm -f "$CONF.tmp"; else mv "$CONF.tmp" "$CONF"; fi
}

record() { echo "$1 $2" >>"$PIDS"; }

wait_pidfile() { # wait_pidfile FILE NAME: until FILE names a live NAME process; prints the pid
    local pid
    for _ in $(seq 100); do
        pid=$(pid_from "$1")
        if alive "$pid" "$2"; then echo "$pid"; return 0; fi
        sleep 0.1
    done
    return 1
}

start_daemons() {
    mkdir -p "$STATE_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
    touch "$PIDS"
    chown slurm:slurm /var/spool/slurmctld /var/log/slurm
    chown munge:munge /run/munge
    chmod 0755 /run/munge
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create

    local pid
    pid=$(pid_from /run/munge/munged.pid)
    if alive "$pid" munged; then
        log "munged already running (pid $pid)"
    else
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged
        pid=$(wait_pidfile /run/munge/munged.pid munged) || die "munged did not start"
        record munged "$pid"
        log "started munged (pid $pid)"
    fi

    pid=$(pid_from /run/slurmctld.pid)
    if alive "$pid" slurmctld; then
        log "slurmctld already running (pid $pid)"
    else
        rm -f /run/slurmctld.pid
        # -c: start from a clean state (no jobs left over from an earlier run)
        /usr/sbin/slurmctld -c
        pid=$(wait_pidfile /run/slurmctld.pid slurmctld) \
            || die "slurmctld did not start; see /var/log/slurm/slurmctld.log"
        record slurmctld "$pid"
        log "started slurmctld (pid $pid)"
    fi

    pid=$(pid_from /run/slurmd.pid)
    if alive "$pid" slurmd; then
        log "slurmd already running (pid $pid)"
    else
        rm -f /run/slurmd.pid
        # -N: the node is called "localhost" whatever this machine's hostname is
        /usr/sbin/slurmd -N "$NODE"
        pid=$(wait_pidfile /run/slurmd.pid slurmd) || die "slurmd did not start; see /var/log/slurm/slurmd.log"
        record slurmd "$pid"
        log "started slurmd (pid $pid)"
    fi
}

wait_idle() {
    local state=""
    for i in $(seq 120); do
        state=$(node_state)
        case "$state" in
            idle | mix | alloc) log "node $NODE is $state"; return 0 ;;
            down* | drain* | drng*)
                # e.g. left down by an earlier crash: give it back to the scheduler once
                [ "$i" = 10 ] && scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    sinfo -N -l >&2 || true
    die "node $NODE not idle after 60 s (state '${state:-none}'); see /var/log/slurm/"
}

cmd_up() {
    need_root
    install_packages
    write_conf
    start_daemons
    wait_idle
}

cmd_status() {
    command -v sinfo >/dev/null || exit 1
    case "$(node_state)" in idle | mix | alloc) sinfo; exit 0 ;; *) exit 1 ;; esac
}

cmd_down() {
    need_root
    [ -s "$PIDS" ] || { log "nothing was started by this script"; rm -f "$PIDS"; return 0; }
    local order=(slurmd slurmctld munged) name pid
    # If this script started the controller, the cluster and its jobs are ours: cancel them so that
    # slurmstepd children do not outlive slurmd.
    if grep -q '^slurmctld ' "$PIDS" && alive "$(awk '$1=="slurmctld"{print $2}' "$PIDS" | tail -1)" slurmctld; then
        timeout 10 scancel --partition="$PARTITION" 2>/dev/null || true
    fi
    for name in "${order[@]}"; do
        for pid in $(awk -v n="$name" '$1==n {print $2}' "$PIDS"); do
            if alive "$pid" "$name"; then
                kill "$pid"
                for _ in $(seq 50); do alive "$pid" "$name" || break; sleep 0.1; done
                if alive "$pid" "$name"; then kill -KILL "$pid"; log "killed $name (pid $pid) after 5 s"; fi
                log "stopped $name (pid $pid)"
            fi
        done
    done
    rm -f "$PIDS"
    # Leave no slurm.conf behind: with one present, every SLURM client (and so every later
    # `snakemake` start, whose slurm plugin runs `scontrol show config` on import) waits ~10 s
    # for a controller that is gone.
    if [ -e "$CONF" ] && grep -qF "$MARK" "$CONF"; then rm -f "$CONF"; log "removed $CONF"; fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
