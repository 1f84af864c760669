#!/usr/bin/env bash
# Stop the sshd of start-sshd-otp.sh. Usage: stop-sshd-otp.sh STATE_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
D=${1:?state folder}/otp
[ -d "$D" ] || exit 0
D=$(cd "$D" && pwd)
stop_pidfile "$D/sshd.pid" "$D/sshd_config" jfr-otp-sshd
