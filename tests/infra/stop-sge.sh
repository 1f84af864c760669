#!/usr/bin/env bash
# Delete every SGE job, then stop the daemons of start-sge.sh. Usage: stop-sge.sh STATE_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
S=${1:?state folder}/sge
[ -d "$S" ] || exit 0
S=$(cd "$S" && pwd)
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
if is_ours "$S/qmaster.pid" sge_qmaster; then
  qdel -u '*' >/dev/null 2>&1 || true
  end=$((SECONDS + 20))
  while [ -n "$(qstat -u '*' 2>/dev/null)" ] && [ $SECONDS -lt $end ]; do sleep 0.5; done
fi
stop_pidfile "$S/execd.pid" sge_execd sge_execd
stop_pidfile "$S/qmaster.pid" sge_qmaster sge_qmaster
