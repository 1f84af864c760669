# shellcheck shell=bash
# Helpers for the test infrastructure scripts (sourced). Debian 12, root, no systemd.

log() { echo "[jfr-infra] $*" >&2; }
die() { echo "[jfr-infra] error: $*" >&2; exit 1; }

# install_missing PKG...: apt-get install what is not installed yet, without
# letting package scripts start daemons (a deny-all policy-rc.d while installing).
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local own_policy=0 rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
  {
    apt-cache show "${missing[@]}" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >&2
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2 ||
      { DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >&2 &&
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; }
  } || rc=$?
  [ $own_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  return $rc
}

# is_ours PIDFILE WORD: the recorded pid lives and its command line holds WORD.
is_ours() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$2"
}

# alive PID: exists and is not a zombie (orphans are reaped late here).
alive() {
  local st
  st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# stop_pidfile PIDFILE WORD NAME: TERM (then KILL after 15 s) the recorded daemon.
stop_pidfile() {
  local pid
  if is_ours "$1" "$2"; then
    pid=$(cat "$1")
    log "stopping $3 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do alive "$pid" || break; sleep 0.25; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$1"
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# retry_until SECONDS WHAT CMD...: run CMD every 0.5 s until it succeeds.
retry_until() {
  local limit=$1 what=$2 end
  shift 2
  end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && die "gave up after ${limit} s waiting for $what"
    sleep 0.5
  done
}
