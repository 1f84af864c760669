#!/usr/bin/env bash
# Son of Grid Engine 8.1.9 on localhost (sge_qmaster + sge_execd, queue "debug"
# with $TEST_SGE_SLOTS slots, scheduler every second), no systemd. Jobs must
# belong to a uid >= 1000: submit as the SSH test user. Writes STATE/sge.env.
# Usage: start-sge.sh STATE_DIR   (as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STATE=${1:?state folder}
SLOTS=${TEST_SGE_SLOTS:-2}
[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$STATE/sge"
STATE=$(cd "$STATE" && pwd)
S=$STATE/sge
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
env_file() { printf 'SGE_ROOT=%s\nSGE_CELL=%s\nTEST_SGE_QUEUE=debug\n' "$SGE_ROOT" "$SGE_CELL" > "$STATE/sge.env"; }
if is_ours "$S/qmaster.pid" sge_qmaster && is_ours "$S/execd.pid" sge_execd; then env_file; exit 0; fi

if ! dpkg-query -W -f='${Status}' gridengine-master 2>/dev/null | grep -q 'ok installed'; then
  printf '%s\n' 'gridengine-common shared/gridengineconfig boolean true' \
    'gridengine-common shared/gridenginecell string default' | debconf-set-selections
fi
install_missing gridengine-master gridengine-exec gridengine-client
[ -f "$COMMON/bootstrap" ] || die "the gridengine packages made no cell in $COMMON"
# the host's name resolves to 127.0.0.1, whose reverse name is localhost: SGE wants them equal
printf '%s\n' localhost "$(hostname)" "$(hostname -f 2>/dev/null || true)" | awk 'NF && !seen[$0]++' | xargs \
  > "$COMMON/host_aliases"
echo localhost > "$COMMON/act_qmaster"
install -d -o sgeadmin -g sgeadmin /var/run/gridengine /var/spool/gridengine/execd
QPID=/var/spool/gridengine/qmaster/qmaster.pid
EPID=/var/spool/gridengine/execd/localhost/execd.pid
if ! is_ours "$S/qmaster.pid" sge_qmaster; then
  listening 6444 && die "port 6444 is taken by another program"
  rm -f "$QPID"
  /usr/sbin/sge_qmaster
  retry_until 30 "sge_qmaster" is_ours "$QPID" sge_qmaster
  cp "$QPID" "$S/qmaster.pid"
  retry_until 30 "sge_qmaster to answer" qconf -sh
fi
qconf -as localhost >/dev/null 2>&1 || true
qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval 0:0:1/' \
  -e 's/^flush_submit_sec .*/flush_submit_sec 1/' -e 's/^flush_finish_sec .*/flush_finish_sec 1/' > "$S/sched.conf"
qconf -Msconf "$S/sched.conf" >/dev/null 2>&1
if ! is_ours "$S/execd.pid" sge_execd; then
  listening 6445 && die "port 6445 is taken by another program"
  rm -f "$EPID"
  /usr/sbin/sge_execd
  retry_until 30 "sge_execd" is_ours "$EPID" sge_execd
  cp "$EPID" "$S/execd.pid"
fi
if ! qconf -sq debug >/dev/null 2>&1; then
  qconf -dq all.q >/dev/null 2>&1 || true
  {
    printf 'qname debug\nhostlist localhost\nseq_no 0\nload_thresholds NONE\nsuspend_thresholds NONE\n'
    printf 'nsuspend 1\nsuspend_interval 00:05:00\npriority 0\nmin_cpu_interval 00:05:00\n'
    printf 'processors UNDEFINED\nqtype BATCH INTERACTIVE\nckpt_list NONE\npe_list make\nrerun FALSE\n'
    printf 'slots %s\ntmpdir /tmp\nshell /bin/bash\nprolog NONE\nepilog NONE\n' "$SLOTS"
    printf 'shell_start_mode posix_compliant\nstarter_method NONE\nsuspend_method NONE\n'
    printf 'resume_method NONE\nterminate_method NONE\nnotify 00:00:60\nowner_list NONE\n'
    printf 'user_lists NONE\nxuser_lists NONE\nsubordinate_list NONE\ncomplex_values NONE\n'
    printf 'projects NONE\nxprojects NONE\ncalendar NONE\ninitial_state default\n'
    for limit in rt cpu fsize data stack core rss vmem; do printf 's_%s INFINITY\nh_%s INFINITY\n' $limit $limit; done
  } > "$S/queue.conf"
  qconf -Aq "$S/queue.conf" >/dev/null
fi
retry_until 60 "queue debug@localhost" bash -c "qstat -f -q debug | awk '/^debug@localhost/ {ok = (NF == 5)} END {exit !ok}'"
env_file
log "sge ready: $(qstat -f -q debug | grep '^debug@')"
