#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the launch tests (Debian 12, as root).
#
#   bash .ci/slurm.sh start    # install if needed, configure, start munge, MariaDB, slurmdbd, slurmctld, slurmd
#   bash .ci/slurm.sh stop     # cancel jobs, stop the daemons started here (by their pid files)
#   bash .ci/slurm.sh status
#
# Accounting (slurmdbd on MariaDB) is on because submitit polls job states with sacct.
# Rerunning start is safe: installed packages and running daemons are left alone.
set -euo pipefail

CLUSTER=prakit
DB_PASS=prakit
LOGS=/var/log/slurm

say() { printf '[slurm %(%H:%M:%S)T] %s\n' -1 "$*"; }
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
until_ok() { # until_ok SECONDS WHAT COMMAND...: retry COMMAND every 0.25 s
  local seconds=$1 what=$2; shift 2
  for ((i = 0; i < seconds * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  say "gave up after ${seconds}s waiting for $what"; exit 1
}

install() {
  local wanted=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server) missing=()
  for p in "${wanted[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure() {
  local host node memory
  host=$(hostname -s)
  node=$(slurmd -C | head -n1)                       # NodeName=... CPUs=... RealMemory=...
  memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  node=$(sed -E "s/^NodeName=[^ ]+/NodeName=$host/; s/RealMemory=[0-9]+/RealMemory=$((memory * 95 / 100))/" <<<"$node")
  mkdir -p /etc/slurm "$LOGS" /var/spool/slurmctld /var/spool/slurmd /run/munge
  chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# a requeued job waits for its credential to expire (default 120 s) before it starts again
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
MinJobAge=300
# a requeued job waits for the main scheduling pass (every 60 s by default) to start again
SchedulerParameters=sched_interval=2
# submitit's workers ignore SIGTERM: without this a cancelled job waits 30 s for its SIGKILL
KillWait=2
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start_daemons() {
  running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
  until_ok 15 munge bash -c 'munge -n | unmunge'

  if ! running /run/mysqld/mysqld.pid; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
      </dev/null >/dev/null 2>&1 &
  fi
  until_ok 60 mariadb mariadb -e 'select 1'
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

  running /run/slurmdbd.pid || /usr/sbin/slurmdbd
  until_ok 90 slurmdbd sacctmgr -n list cluster
  sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER || sacctmgr -i add cluster $CLUSTER >/dev/null

  running /run/slurmctld.pid || /usr/sbin/slurmctld
  until_ok 30 slurmctld bash -c 'scontrol ping | grep -q UP'
  running /run/slurmd.pid || /usr/sbin/slurmd
  local host; host=$(hostname -s)
  until_ok 30 "node registration" bash -c "sinfo -h -n $host -o %T | grep -qv '^unk'"
  sinfo -h -n "$host" -o %T | grep -qE 'down|drain' && scontrol update NodeName="$host" State=RESUME
  until_ok 90 "an idle node" bash -c "sinfo -h -n $host -o %T | grep -qE '^(idle|mixed|allocated)'"
}

stop_daemon() { # stop_daemon PIDFILE
  running "$1" || return 0
  local pid; pid=$(cat "$1")
  kill "$pid"
  for ((i = 0; i < 80; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-start}" in
  start)
    started=$SECONDS
    install; configure; start_daemons
    say "cluster up in $((SECONDS - started)) s"; sinfo ;;
  stop)
    running /run/slurmctld.pid && scancel --user="$(id -un)" 2>/dev/null || true
    for f in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid /run/munge/munged.pid; do
      stop_daemon "$f"
    done ;;
  status)
    for f in /run/munge/munged.pid /run/mysqld/mysqld.pid /run/slurmdbd.pid /run/slurmctld.pid /run/slurmd.pid; do
      if running "$f"; then echo "$f: running"; else echo "$f: stopped"; fi
    done ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
