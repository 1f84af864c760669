#!/usr/bin/env bash
# A one-node SLURM cluster on localhost (munged, slurmctld, slurmd; partition
# "debug"; node "localhost" with $TEST_SLURM_CPUS CPUs), no systemd, no cgroups.
# Writes /etc/slurm/slurm.conf and STATE/slurm.env. Idempotent.
# Usage: start-slurm.sh STATE_DIR   (as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STATE=${1:?state folder}
CPUS=${TEST_SLURM_CPUS:-2}
MINJOBAGE=${TEST_SLURM_MINJOBAGE:-300}
[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$STATE/slurm"
STATE=$(cd "$STATE" && pwd)
S=$STATE/slurm

env_file() { printf 'TEST_SLURM_PARTITION=debug\nTEST_SLURM_CPUS=%s\nTEST_SLURM_LOGDIR=%s\n' "$CPUS" "$S" > "$STATE/slurm.env"; }
if is_ours "$S/munged.pid" munged && is_ours "$S/slurmctld.pid" slurmctld && is_ours "$S/slurmd.pid" slurmd; then
  env_file; exit 0
fi
install_missing munge slurmctld slurmd slurm-client

[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
if ! is_ours "$S/munged.pid" munged; then
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --force
  retry_until 15 "munged" is_ours /run/munge/munged.pid munged
  cp /run/munge/munged.pid "$S/munged.pid"
  retry_until 15 "munge credentials" bash -c 'munge -n | unmunge'
fi

MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$((MEM > 1024 ? MEM - 512 : MEM))
install -d -o slurm -g slurm "$S/ctld"
install -d "$S/d"
cat > /etc/slurm/slurm.conf <<CONF
# written by jfr's tests/infra/start-slurm.sh: a one-node test cluster
ClusterName=jfrtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
OverTimeLimit=0
MinJobAge=$MINJOBAGE
InactiveLimit=0
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/d
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
chmod 644 /etc/slurm/slurm.conf
rm -f /etc/slurm/cgroup.conf
if ! is_ours "$S/slurmctld.pid" slurmctld; then
  listening 6817 && die "port 6817 is taken by another program"
  /usr/sbin/slurmctld
  retry_until 30 "slurmctld" scontrol ping
fi
if ! is_ours "$S/slurmd.pid" slurmd; then
  listening 6818 && die "port 6818 is taken by another program"
  /usr/sbin/slurmd -N localhost
  retry_until 30 "slurmd" is_ours "$S/slurmd.pid" slurmd
fi
end=$((SECONDS + 60))
until sinfo -h -n localhost -o %T | grep -Eq '^(idle|mixed|allocated)'; do
  case "$(sinfo -h -n localhost -o %T 2>/dev/null)" in
    down*|drain*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
  esac
  [ $SECONDS -ge $end ] && die "the node did not become ready; see $S/slurmd.log"
  sleep 0.5
done
env_file
log "slurm ready: $(sinfo -h -o '%P %a %D %T %c')"
