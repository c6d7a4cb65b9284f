# shellcheck shell=bash
# lib.sh — plumbing shared by the peer-server scripts of the benchmarks (dovecot.sh,
# postfix-smtp.sh): Debian package installs, the system instance a package may start,
# pid files, waiting for processes and for a greeting, and the stop sequence
# "SIGTERM, wait, SIGKILL". Sourced, never run; the sourcing script sets PROG (its name,
# the prefix of every message) and `set -euo pipefail` before sourcing it.
#
# Why it is a sourced file: each script stays one self-contained command line for the
# bench binaries (`bash SCRIPT start ...`), while the rules of how a private instance is
# installed, started and stopped are written once.

die() { echo "$PROG: $*" >&2; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "$1 must run as root"; }

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------

# apt_install [APT_OPTION...] PKG...: installs Debian packages quietly (the apt output is
# shown only on failure). Needs root.
apt_install() {
  [[ $(id -u) -eq 0 ]] || die "install needs root (apt-get)"
  local log arg pkgs=()
  for arg in "$@"; do [[ $arg == -* ]] || pkgs+=("$arg"); done
  log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  echo "$PROG: installing ${pkgs[*]}" >&2
  if ! apt-get install -y -q "$@" >"$log" 2>&1; then
    # Stale package lists are the usual cause: refresh once and retry.
    if ! { apt-get update -q && apt-get install -y -q "$@"; } >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      die "apt-get install ${pkgs[*]} failed"
    fi
  fi
  rm -f "$log"
}

# stop_system_instance SERVICE PID KILL_TARGET [STOP_COMMAND...]: the package's postinst
# may have started the system-wide instance (unless policy-rc.d forbade it): stop it, we
# only run private instances. Asks STOP_COMMAND (if given), then `service SERVICE stop`,
# then SIGTERM to PID; after 10 s SIGKILLs KILL_TARGET (PID, or -PID for its process
# group). Then keeps it from coming back on a later boot/reinstall where services may run
# (the units are SERVICE.service and SERVICE.socket where they exist).
stop_system_instance() {
  local service=$1 pid=$2 target=$3
  shift 3
  if [[ -n $pid ]]; then
    echo "$PROG: stopping the system $service started by the package (pid $pid)" >&2
    if (($# > 0)) && "$@" >/dev/null 2>&1; then
      :
    else
      service "$service" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    fi
    wait_gone 10 "$pid" || kill -KILL -- "$target" 2>/dev/null || true
  fi
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    systemctl disable --now "$service.socket" >/dev/null 2>&1 || true
  fi
  return 0
}

# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

abs_dir() { (cd "$1" && pwd -P); }

# pidfile_pid FILE: the pid in FILE if that process exists (nothing otherwise).
pidfile_pid() {
  local pid
  [[ -s $1 ]] || return 0
  pid=$(tr -d ' \n' <"$1")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
  return 0
}

# wait_gone SECONDS PID...: wait until none of PIDs exists; status 1 on timeout.
wait_gone() {
  local t=$1 p alive; shift
  for _ in $(seq 1 $((t * 10))); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && { alive=1; break; }; done
    ((alive)) || return 0
    sleep 0.1
  done
  return 1
}

# kill_leftovers DIR LIST_COMMAND...: SIGTERM to every pid LIST_COMMAND prints, SIGKILL to
# those still there after 10 s (re-listed, so a pid reused meanwhile is not hit), then a
# wait of up to 5 s.
kill_leftovers() {
  local dir=$1 pids
  shift
  pids=$("$@")
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_gone 10 $pids && return 0
  pids=$("$@")
  [[ -n $pids ]] || return 0
  echo "$PROG: killing leftover processes of $dir: ${pids//$'\n'/ }" >&2
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_gone 5 $pids || true
}

# ---------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)); }

# split_users USERS PATTERN: the comma-separated USERS into the array `user_list`, each
# name checked against PATTERN (an anchored regex).
split_users() {
  local user
  IFS=, read -r -a user_list <<<"$1"
  ((${#user_list[@]} > 0)) || die "no users given"
  for user in "${user_list[@]}"; do
    [[ $user =~ $2 ]] || die "bad user name: $user"
  done
}

# mail_ids ENV_NAME: sets mail_user, uid and gid from the user named by the environment
# variable ENV_NAME (default nobody). Never root: neither server delivers mail as uid 0.
# shellcheck disable=SC2034 # mail_user, uid and gid are the caller's locals
mail_ids() {
  mail_user=${!1:-nobody}
  uid=$(id -u "$mail_user") || die "no such user: $mail_user"
  gid=$(id -g "$mail_user")
  ((uid != 0)) || die "$1 must not be root"
}

# must_reach USER TEST_FLAG PATH DIR: the server's processes run as USER and must reach
# PATH (below DIR) through every parent directory of DIR (DIR below a 0700 directory such
# as /root will not do).
must_reach() {
  local what="read"
  [[ $2 == -w ]] && what="write"
  runuser -u "$1" -- test "$2" "$3" \
    || die "user $1 cannot $what $3 (a parent of $4 not searchable?); pick another DIR"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# greeting_ok PORT PREFIX GOODBYE: the first line on 127.0.0.1:PORT starts with PREFIX;
# GOODBYE (the protocol's logout command) is sent before closing.
greeting_ok() {
  local line=""
  {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    IFS= read -r -t 2 line <&3 || true
    printf '%s\r\n' "$3" >&3 || true
    exec 3<&- 3>&-
  } 2>/dev/null
  [[ $line == "$2"* ]]
}

# wait_greeting SECONDS PORT PREFIX GOODBYE [PID]: polls for the greeting every 0.1 s;
# status 1 on timeout, or as soon as PID (the server, when known) has exited.
wait_greeting() {
  local secs=$1 port=$2 prefix=$3 goodbye=$4 pid=${5:-}
  for _ in $(seq 1 $((secs * 10))); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    greeting_ok "$port" "$prefix" "$goodbye" && return 0
    sleep 0.1
  done
  return 1
}

# show_tails FILE...: the last lines of each non-empty FILE on stderr (a failed start).
show_tails() {
  local f
  for f in "$@"; do
    [[ -s $f ]] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }
  done
  return 0
}
