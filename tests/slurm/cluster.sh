#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for the slurm tests (make test-slurm): munge, MariaDB (Unix socket
# only), slurmdbd, slurmctld and slurmd, as root, no systemd, no cgroups, every file under one folder.
#
#   tests/slurm/cluster.sh start    install the packages if missing, write the configs, start the daemons,
#                                   wait until the node is idle (idempotent: a running cluster is kept)
#   tests/slurm/cluster.sh stop     stop every daemon by its pid (idempotent)
#   tests/slurm/cluster.sh status   exit 0 when the node answers idle or allocated
#   tests/slurm/cluster.sh env      the line that points SLURM's commands at this cluster (eval it)
#
# ALLCONV_SLURM_DIR (default /tmp/allconv_slurm) holds the configs, state, spool, logs, pid files and the
# accounting database. Clients find the cluster through SLURM_CONF=$ALLCONV_SLURM_DIR/etc/slurm.conf.
set -euo pipefail

DIR=${ALLCONV_SLURM_DIR:-/tmp/allconv_slurm}
CLUSTER=allconv
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(slurmd slurmctld slurmdbd mariadb munged)   # stopped in this order
export SLURM_CONF=$DIR/etc/slurm.conf

say() { printf 'slurm cluster: %s\n' "$*"; }

wait_for() {  # wait_for <seconds> <what> <command...>: poll, never a fixed sleep
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            say "gave up waiting for $what after ${limit}s; logs in $DIR/log"
            tail -n 20 "$DIR"/log/*.log 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

pid_alive() { [[ -f $DIR/run/$1.pid ]] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

node_ready() { sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

write_configs() {
    local host node
    host=$(hostname -s)
    node=$(slurmd -C | head -n 1)   # NodeName=<host> CPUs=... RealMemory=... as slurmd sees this machine
    mkdir -p "$DIR"/{etc,state,spool,log,run,db}
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MailProg=/bin/true
SchedulerParameters=sched_interval=2
JobRequeue=1
ReturnToService=2
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

start_munge() {
    pid_alive munged && return 0
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    [[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged  # forks; writes /run/munge/munged.pid
    wait_for 10 munged test -S /run/munge/munge.socket.2
    cp /run/munge/munged.pid "$DIR/run/munged.pid"
}

start_mariadb() {
    pid_alive mariadb && return 0
    mkdir -p /run/mysqld
    if [[ ! -d $DIR/db/mysql ]]; then
        mariadb-install-db --datadir="$DIR/db" --user=root --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
    fi
    # no TCP: clients (slurmdbd) connect to localhost through the default Unix socket, as root
    mariadbd --datadir="$DIR/db" --user=root --skip-networking --socket=/run/mysqld/mysqld.sock \
        --pid-file="$DIR/run/mariadb.pid" --log-error="$DIR/log/mariadb.log" >/dev/null 2>&1 &
    wait_for 30 MariaDB test -S /run/mysqld/mysqld.sock
}

start() {
    if [[ -f $SLURM_CONF ]] && node_ready; then
        say "already running ($DIR)"
        return 0
    fi
    install_packages
    write_configs
    start_munge
    start_mariadb
    pid_alive slurmdbd || { slurmdbd -D >"$DIR/log/slurmdbd.out" 2>&1 & }
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    pid_alive slurmctld || { slurmctld -D -i >"$DIR/log/slurmctld.out" 2>&1 & }
    wait_for 30 slurmctld scontrol ping
    pid_alive slurmd || { slurmd -D >"$DIR/log/slurmd.out" 2>&1 & }
    wait_for 60 "the node to be idle" node_ready
    say "up: $(sinfo -h -o '%P %a %D %t') ($DIR); clients need: export SLURM_CONF=$SLURM_CONF"
}

stop() {
    local any=0
    for d in "${DAEMONS[@]}"; do
        if pid_alive "$d"; then
            any=1
            local pid
            pid=$(cat "$DIR/run/$d.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/run/$d.pid"
    done
    ((any)) && say "stopped" || say "not running"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) node_ready ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
