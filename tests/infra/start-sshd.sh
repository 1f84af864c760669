#!/usr/bin/env bash
# A private sshd on 127.0.0.1:$TEST_SSH_PORT (2222) with key-only login for the
# unprivileged user $TEST_SSH_USER (jfrtest). Writes STATE/ssh.env. Idempotent.
# Usage: start-sshd.sh STATE_DIR   (as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STATE=${1:?state folder}
PORT=${TEST_SSH_PORT:-2222}
TUSER=${TEST_SSH_USER:-jfrtest}
[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$STATE/ssh"
STATE=$(cd "$STATE" && pwd)
D=$STATE/ssh

env_file() {
  printf 'TEST_SSH_HOST=127.0.0.1\nTEST_SSH_PORT=%s\nTEST_SSH_USER=%s\nTEST_SSH_KEY=%s\nTEST_SSH_KNOWN_HOSTS=%s\n' \
    "$PORT" "$TUSER" "$D/id_ed25519" "$D/known_hosts" > "$STATE/ssh.env"
}
if is_ours "$D/sshd.pid" "$D/sshd_config"; then env_file; exit 0; fi

install_missing openssh-server openssh-client
id "$TUSER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$TUSER"
usermod -p '*' "$TUSER"   # no password, but not locked ('!' blocks key logins without PAM)
HOME_DIR=$(getent passwd "$TUSER" | cut -d: -f6)
[ -f "$D/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$TUSER@jfr-tests" -f "$D/id_ed25519"
[ -f "$D/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$D/host_ed25519"
chmod 600 "$D/id_ed25519" "$D/host_ed25519"
hostkey=$(cut -d' ' -f1,2 "$D/host_ed25519.pub")
printf '[127.0.0.1]:%s %s\n[localhost]:%s %s\n' "$PORT" "$hostkey" "$PORT" "$hostkey" > "$D/known_hosts"
install -d -m 700 -o "$TUSER" -g "$TUSER" "$HOME_DIR/.ssh"
install -m 600 -o "$TUSER" -g "$TUSER" "$D/id_ed25519.pub" "$HOME_DIR/.ssh/authorized_keys"
cat > "$D/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $D/host_ed25519
PidFile $D/sshd.pid
AllowUsers $TUSER
PermitRootLogin no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
CONF
listening "$PORT" && die "port $PORT is taken by another program"
mkdir -p /run/sshd && chmod 755 /run/sshd
/usr/sbin/sshd -t -f "$D/sshd_config"
/usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log"
retry_until 20 "sshd" is_ours "$D/sshd.pid" "$D/sshd_config"
retry_until 20 "a login as $TUSER" ssh -p "$PORT" -i "$D/id_ed25519" -o BatchMode=yes \
  -o IdentitiesOnly=yes -o UserKnownHostsFile="$D/known_hosts" -o StrictHostKeyChecking=yes \
  -o ConnectTimeout=5 "$TUSER@127.0.0.1" true
env_file
log "sshd on 127.0.0.1:$PORT (pid $(cat "$D/sshd.pid"))"
