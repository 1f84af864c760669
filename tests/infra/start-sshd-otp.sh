#!/usr/bin/env bash
# A second private sshd on 127.0.0.1:$TEST_OTP_PORT (2223) that demands a key *and*
# a one-time code (AuthenticationMethods publickey,keyboard-interactive; TOTP
# checked by PAM's google-authenticator module) for $TEST_SSH_USER (jfrtest).
# It runs under its own name (jfr-otp-sshd) so that it has its own PAM service and
# leaves the system's sshd configuration alone. Reuses the user and the key of
# start-sshd.sh. Writes STATE/otp.env (the TOTP secret for oathtool). Idempotent.
# Usage: start-sshd-otp.sh STATE_DIR   (as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STATE=${1:?state folder}
PORT=${TEST_OTP_PORT:-2223}
TUSER=${TEST_SSH_USER:-jfrtest}
[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$STATE/otp"
STATE=$(cd "$STATE" && pwd)
D=$STATE/otp
bash "$(dirname "$0")/start-sshd.sh" "$STATE" >&2   # the user, its key and the openssh packages
KEY=$STATE/ssh/id_ed25519
HOME_DIR=$(getent passwd "$TUSER" | cut -d: -f6)

env_file() {
  printf 'TEST_OTP_HOST=127.0.0.1\nTEST_OTP_PORT=%s\nTEST_OTP_KNOWN_HOSTS=%s\nTEST_OTP_SECRET=%s\n' \
    "$PORT" "$D/known_hosts" "$(head -n1 "$HOME_DIR/.google_authenticator")" > "$STATE/otp.env"
}
if is_ours "$D/sshd.pid" "$D/sshd_config"; then env_file; exit 0; fi

install_missing libpam-google-authenticator oathtool
# a fixed-length base32 secret; a window of 3 codes (the previous, current and next 30 s)
secret=$(head -c 20 /dev/urandom | base32 | tr -d '=\n')
printf '%s\n" WINDOW_SIZE 3\n" TOTP_AUTH\n' "$secret" > "$HOME_DIR/.google_authenticator"
chown "$TUSER:$TUSER" "$HOME_DIR/.google_authenticator"
chmod 400 "$HOME_DIR/.google_authenticator"
cat > /etc/pam.d/jfr-otp-sshd <<'PAM'
# jfr's test sshd: the key is checked by sshd, the one-time code here
auth     required pam_google_authenticator.so
account  required pam_permit.so
session  required pam_permit.so
PAM
ln -sf /usr/sbin/sshd /usr/local/sbin/jfr-otp-sshd   # PAM service name = program name
[ -f "$D/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/host_ed25519"
chmod 600 "$D/host_ed25519"
hostkey=$(cut -d' ' -f1,2 "$D/host_ed25519.pub")
printf '[127.0.0.1]:%s %s\n[localhost]:%s %s\n' "$PORT" "$hostkey" "$PORT" "$hostkey" > "$D/known_hosts"
cat > "$D/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $D/host_ed25519
PidFile $D/sshd.pid
AllowUsers $TUSER
PermitRootLogin no
AuthenticationMethods publickey,keyboard-interactive
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication yes
UsePAM yes
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
CONF
listening "$PORT" && die "port $PORT is taken by another program"
mkdir -p /run/sshd && chmod 755 /run/sshd
/usr/local/sbin/jfr-otp-sshd -t -f "$D/sshd_config"
/usr/local/sbin/jfr-otp-sshd -f "$D/sshd_config" -E "$D/sshd.log"
retry_until 20 "the one-time-code sshd" is_ours "$D/sshd.pid" "$D/sshd_config"
# the key alone must not be enough
if ssh -p "$PORT" -i "$KEY" -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="$D/known_hosts" \
     -o StrictHostKeyChecking=yes -o ConnectTimeout=5 "$TUSER@127.0.0.1" true </dev/null >/dev/null 2>&1; then
  die "the one-time-code sshd let a key alone in"
fi
env_file
log "one-time-code sshd on 127.0.0.1:$PORT (pid $(cat "$D/sshd.pid"))"
