#!/usr/bin/env bash
# Cancel the test cluster's jobs, then stop its daemons. Usage: stop-slurm.sh STATE_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
S=${1:?state folder}/slurm
[ -d "$S" ] || exit 0
S=$(cd "$S" && pwd)
if is_ours "$S/slurmctld.pid" slurmctld; then
  scancel --partition=debug 2>/dev/null || true
  end=$((SECONDS + 30))
  while [ -n "$(squeue -h -p debug -t PD,R,CG,S -o %i 2>/dev/null)" ] && [ $SECONDS -lt $end ]; do sleep 0.5; done
fi
stop_pidfile "$S/slurmd.pid" slurmd slurmd
stop_pidfile "$S/slurmctld.pid" slurmctld slurmctld
stop_pidfile "$S/munged.pid" munged munged
