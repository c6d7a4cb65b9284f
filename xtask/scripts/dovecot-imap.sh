#!/usr/bin/env bash
# dovecot-imap.sh — a private Dovecot IMAP server on loopback, for side-by-side
# benchmarks against Tern's IMAP service (`cargo xtask bench imap`). A copy of
# dovecot-imap.sh with the protocol-specific parts changed.
#
#   dovecot-imap.sh install
#   dovecot-imap.sh start DIR PORT USER[,USER...] PASSWORD CORPUS_DIR
#   dovecot-imap.sh stop DIR
#
# install  Installs dovecot-core + dovecot-imapd from Debian if the `dovecot`
#          binary or the imap protocol binary is missing (quiet and a no-op when
#          both are present). If the package install starts the system-wide
#          dovecot (ports 110/143 with /etc/dovecot), that instance is stopped:
#          only private instances may run.
# start    (Re)creates DIR/dovecot.conf and DIR/mail, loads every file of
#          CORPUS_DIR (sorted by name in byte order, subdirectories ignored;
#          one RFC 5322 message with CRLF line endings per file) into each
#          USER's maildir INBOX in that order, starts `dovecot -F` in its own
#          session (as root; mail is served as DOVECOT_MAIL_USER, default
#          nobody), writes its pid to DIR/dovecot.pid and waits up to 10 s for a
#          `* OK` greeting on 127.0.0.1:PORT. Any instance already running from
#          DIR is stopped first, so each start begins from the full corpus.
# stop     Stops the instance of DIR (SIGTERM to the master, then to the imap
#          processes of still-connected clients that outlive it, SIGKILL after
#          10 s) and waits until every process of its session has exited.
#          Idempotent.
#
# Why each setting in the generated dovecot.conf is there (2.3 syntax; the 2.4
# branch writes the same settings under their 2.4 names, untested here since
# Debian 12 ships 2.3.19):
#   base_dir, state_dir     Sockets, master.pid and the instances list live under
#                           DIR (DIR/run, DIR/state), so instances never touch
#                           /run/dovecot or /var/lib/dovecot, the system instance,
#                           or each other. Unix socket paths must fit in 108
#                           bytes (else "File name too long" at startup), so for
#                           a DIR longer than 60 characters base_dir becomes
#                           /tmp/dovecot-bench-<md5(DIR)>, with DIR/run a symlink.
#   log_path, info_log_path DIR/dovecot.log: these machines have no syslog.
#   instance_name           Unique per DIR, so ps output tells instances apart.
#   listen = 127.0.0.1      Loopback only.
#   protocols = imap        No pop3/lmtp/submission services are started at all.
#   imap-login listeners    imap on PORT; imaps disabled with port = 0 (its
#                           default 993 is privileged and not wanted).
#   ssl = no                Plain TCP, like the Tern side of the benchmark.
#   disable_plaintext_auth  = no (2.4: auth_allow_cleartext = yes): LOGIN
#                           without TLS. (Dovecot already treats 127.0.0.1 as
#                           "secured"; this keeps it working if that changes.)
#   auth_mechanisms = plain Only what the benchmark uses (IMAP LOGIN is checked
#                           through the PLAIN mechanism).
#   passdb passwd-file      DIR/users with "USER:{PLAIN}PASSWORD": no hashing
#                           cost differences between the two servers' logins
#                           (the benchmark logs in once per client, outside the
#                           timed part, anyway).
#   userdb static           uid/gid of $DOVECOT_MAIL_USER (default `nobody`),
#                           home DIR/home/USER. Not root's: Dovecot never runs
#                           mail processes as uid 0 ("userdb returned 0 as uid";
#                           with mail_uid = 0 "Mail access not allowed for root";
#                           first_valid_uid = 0 does not help). The maildir is
#                           chowned to that user, who must be able to reach DIR
#                           (checked at start: DIR below a 0700 directory such
#                           as /root will not do).
#   first_valid_uid/gid = 1 The defaults (500/1) would reject a low system uid
#                           if DOVECOT_MAIL_USER names one.
#   mail_location           maildir:DIR/mail/%u (2.4: mail_driver + mail_path);
#                           Dovecot's indexes live inside the maildir (default).
#   mail_fsync = optimized  Dovecot's default, set explicitly: the IMAP workload
#                           writes (APPEND, flag changes, EXPUNGE), and Tern
#                           acknowledges a write only once it is fsynced on a
#                           Raft majority, so Dovecot keeps the durability it
#                           ships with (fsync of new message files) rather than
#                           the `never` of the read-only POP3 benchmark.
#   mail_max_userip_connections = 1000
#                           The default of 10 per user+IP is not hit by the
#                           benchmark (one session per user), but a larger run
#                           or a manual check with several sessions should not
#                           turn into "* BYE [UNAVAILABLE] Maximum number of
#                           connections".
#   default_login_user/default_internal_user
#                           dovenull/dovecot, the users the Debian package
#                           creates (the built-in defaults anyway; set explicitly).
#   service auth/auth-worker user = root
#                           They read DIR/users (mode 0600); as root they do not
#                           depend on DIR's parents being readable by `dovecot`.
#   imap-login service_count = 0, process_min_avail = process_limit = nproc
#                           Dovecot's documented "high-performance" login mode
#                           (2.4: restart_request_count = unlimited): a few
#                           long-lived login processes instead of forking one
#                           per connection - the fair setup for a benchmark.
#                           Each IMAP session still gets its own imap process.
#   default_process_limit = 1000
#                           The default 100 would cap concurrent imap sessions
#                           (one process each) at 100.
#
# Maildir loading: Dovecot's maildir stores LF line endings on disk and adds the
# CRs back when serving IMAP, so each message is written with CRLF -> LF. The
# file name is "<T+n>.M<n>P1.bench,S=<lf-size>,W=<crlf-size>:2," in cur/: S= is the
# on-disk size, W= the "virtual" (CRLF) size which RFC822.SIZE reports, so
# Dovecot knows the corpus file sizes without reading the messages. Dovecot
# assigns UIDs to new maildir files sorted by their leading timestamp, so message
# n of the corpus (name order) gets UID n, as on the Tern side.
set -euo pipefail

die() { echo "dovecot-imap.sh: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 install | start DIR PORT USER PASSWORD CORPUS_DIR | stop DIR" >&2
  exit 2
}

IMAP_BIN=/usr/lib/dovecot/imap   # installed by dovecot-imapd on Debian

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------
system_dovecot_pids() {
  # master processes of the system instance: those whose base_dir is /run/dovecot
  local pidfile=/run/dovecot/master.pid pid
  if [[ -s $pidfile ]]; then
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
  fi
}

cmd_install() {
  if command -v dovecot >/dev/null 2>&1 && [[ -x $IMAP_BIN ]]; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "install needs root (apt-get)"
  local pkgs=(dovecot-core dovecot-imapd) log
  log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  echo "dovecot-imap.sh: installing ${pkgs[*]}" >&2
  if ! apt-get install -y -q "${pkgs[@]}" >"$log" 2>&1; then
    # Stale package lists are the usual cause: refresh once and retry.
    if ! { apt-get update -q && apt-get install -y -q "${pkgs[@]}"; } >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      die "apt-get install ${pkgs[*]} failed"
    fi
  fi
  rm -f "$log"
  command -v dovecot >/dev/null 2>&1 || die "dovecot still missing after install"
  [[ -x $IMAP_BIN ]] || die "$IMAP_BIN still missing after install"

  # The package's postinst may have started the system-wide instance (on 110/143)
  # unless policy-rc.d forbade it: stop it, we only run private instances.
  local pid
  pid=$(system_dovecot_pids)
  if [[ -n $pid ]]; then
    echo "dovecot-imap.sh: stopping the system dovecot started by the package (pid $pid)" >&2
    service dovecot stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  # Keep it from coming back on a later boot/reinstall where services may run.
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
  return 0
}

# ---------------------------------------------------------------------------
# helpers for start/stop
# ---------------------------------------------------------------------------
abs_dir() { (cd "$1" && pwd -P); }

# pid recorded in DIR/dovecot.pid if that process is still the dovecot master
# started with DIR/dovecot.conf (guards against pid reuse).
live_master_pid() {
  local dir=$1 pid cmdline
  [[ -s $dir/dovecot.pid ]] || return 0
  pid=$(<"$dir/dovecot.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [[ -r /proc/$pid/cmdline ]] || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  [[ $cmdline == *"$dir/dovecot.conf"* ]] && echo "$pid"
  return 0
}

# All processes in session SID (the master is started with setsid, so its
# children - login, auth, log, imap, ... - all share its session id).
session_pids() {
  local sid=$1 stat line p
  if command -v pgrep >/dev/null 2>&1; then
    pgrep -s "$sid" || true
    return 0
  fi
  for stat in /proc/[0-9]*/stat; do
    IFS= read -r line <"$stat" 2>/dev/null || continue
    p=${stat#/proc/}; p=${p%/stat}
    line=${line##*) }           # after "pid (comm) ": state ppid pgrp session ...
    read -r _ _ _ line _ <<<"$line"
    [[ $line == "$sid" ]] && echo "$p"
  done
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

# base_dir of DIR's instance (see the header: short fallback for long DIRs).
run_dir() {
  local dir=$1
  if ((${#dir} <= 60)); then
    echo "$dir/run"
  else
    echo "/tmp/dovecot-bench-$(printf '%s' "$dir" | md5sum | cut -c1-16)"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

greeting_ok() {
  local line=""
  {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    IFS= read -r -t 2 line <&3 || true
    printf 'a LOGOUT\r\n' >&3 || true
    exec 3<&- 3>&-
  } 2>/dev/null
  [[ $line == "* OK"* ]]
}

dovecot_major_minor() {
  # "2.3.19.1 (9b53102964)" -> "2.3"
  dovecot --version 2>/dev/null | sed -n '1s/^\([0-9]*\.[0-9]*\).*/\1/p'
}

# ---------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------
cmd_stop() {
  [[ $# -eq 1 ]] || usage
  [[ -d $1 ]] || return 0
  local dir pid left run
  dir=$(abs_dir "$1")
  run=$(run_dir "$dir")
  pid=$(live_master_pid "$dir")
  if [[ -z $pid ]]; then
    rm -f "$dir/dovecot.pid"
    [[ $run == "$dir/run" ]] || rm -rf "$run"
    return 0
  fi
  # SIGTERM to the master is what `doveadm stop` does. The master then stops
  # its helper services, but imap processes of connected clients (and the log
  # process serving them) outlive it until their client disconnects: once the
  # master is gone, TERM the rest of its session, and KILL whatever is left
  # after 10 s more.
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone 10 "$pid"; then
    echo "dovecot-imap.sh: master $pid ($dir) ignored SIGTERM for 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone 5 "$pid" || true
  fi
  left=$(session_pids "$pid")
  if [[ -n $left ]]; then
    # shellcheck disable=SC2086
    kill -TERM $left 2>/dev/null || true
    # shellcheck disable=SC2086
    if ! wait_gone 10 $left; then
      left=$(session_pids "$pid")
      echo "dovecot-imap.sh: killing leftover processes of $dir:" $left >&2
      # shellcheck disable=SC2086
      [[ -n $left ]] && { kill -KILL $left 2>/dev/null || true; }
      # shellcheck disable=SC2086
      wait_gone 5 $left || true
    fi
  fi
  rm -f "$dir/dovecot.pid"
  [[ $run == "$dir/run" ]] || rm -rf "$run"
}

# ---------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------
write_conf_23() {
  local dir=$1 port=$2 uid=$3 gid=$4 run=$5 nproc
  nproc=$(nproc 2>/dev/null || echo 2)
  cat <<CONF
# Generated by xtask/scripts/dovecot-imap.sh (Dovecot 2.3) - see its header.
base_dir = $run
state_dir = $dir/state
instance_name = dovecot-bench-$port
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:$dir/mail/%u
mail_fsync = optimized
mail_max_userip_connections = 1000

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}

default_process_limit = 1000
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = $nproc
  process_limit = $nproc
}
service auth {
  user = root
}
service auth-worker {
  user = root
}
CONF
}

write_conf_24() {
  local dir=$1 port=$2 uid=$3 gid=$4 run=$5 nproc
  nproc=$(nproc 2>/dev/null || echo 2)
  cat <<CONF
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
# Generated by xtask/scripts/dovecot-imap.sh (Dovecot 2.4) - see its header.
base_dir = $run
state_dir = $dir/state
instance_name = dovecot-bench-$port
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
first_valid_gid = 1
mail_driver = maildir
mail_path = $dir/mail/%{user}
mail_fsync = optimized
mail_max_userip_connections = 1000

passdb passwd-file {
  passwd_file_path = $dir/users
}
userdb static {
  fields {
    uid = $uid
    gid = $gid
    home = $dir/home/%{user}
  }
}

default_process_limit = 1000
service imap-login {
  inet_listener imap {
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
  restart_request_count = unlimited
  process_min_avail = $nproc
  process_limit = $nproc
}
service auth {
  user = root
}
service auth-worker {
  user = root
}
CONF
}

# Copy every file of CORPUS into MAILDIR/cur, CRLF -> LF, with S=/W= sizes.
load_corpus() {
  local corpus=$1 maildir=$2
  perl -e '
    use strict; use warnings;
    my ($corpus, $cur) = @ARGV;
    opendir(my $dh, $corpus) or die "opendir $corpus: $!\n";
    my @names = sort grep { -f "$corpus/$_" } readdir($dh);
    closedir($dh);
    die "no files in $corpus\n" unless @names;
    my $n = 0;
    for my $name (@names) {
      $n++;
      open(my $in, "<:raw", "$corpus/$name") or die "$corpus/$name: $!\n";
      local $/; my $msg = <$in>; close($in);
      $msg =~ s/\r\n/\n/g;                       # maildir stores LF endings
      my $lf = length($msg);
      my $crlf = $lf + ($msg =~ tr/\n//);        # what IMAP serves: LF -> CRLF
      my $file = sprintf("%d.M%dP1.bench,S=%d,W=%d:2,", 1000000000 + $n, $n, $lf, $crlf);
      open(my $out, ">:raw", "$cur/$file") or die "$cur/$file: $!\n";
      print $out $msg or die "write $cur/$file: $!\n";
      close($out) or die "close $cur/$file: $!\n";
    }
    print "$n\n";
  ' "$corpus" "$maildir/cur"
}

cmd_start() {
  [[ $# -eq 5 ]] || usage
  local dir=$1 port=$2 users=$3 password=$4 corpus=$5 user
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "bad port: $port"; fi
  # Several users (comma-separated) each get the whole corpus: the benchmark gives every
  # client a mailbox of its own, so clients do not contend on one mailbox.
  IFS=, read -r -a user_list <<<"$users"
  for user in "${user_list[@]}"; do
    [[ $user =~ ^[A-Za-z0-9._@+-]+$ ]] || die "bad user name: $user"
  done
  [[ $password != *:* && $password != *$'\n'* ]] || die "password must not contain ':' or newline"
  [[ -d $corpus ]] || die "corpus directory not found: $corpus"
  if ! command -v dovecot >/dev/null 2>&1 || [[ ! -x $IMAP_BIN ]]; then
    die "dovecot/imap not installed: run '$0 install'"
  fi
  # Dovecot's master must be root to chroot the login processes and switch
  # to dovenull/dovecot/the mail user (a non-root master is not supported here).
  [[ $(id -u) -eq 0 ]] || die "start must run as root"

  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  cmd_stop "$dir"                       # a previous instance from DIR, if any
  if port_open "$port"; then
    die "127.0.0.1:$port is already in use"
  fi

  local version mm uid gid mail_user
  version=$(dovecot --version 2>/dev/null | head -n1)
  mm=$(dovecot_major_minor)
  mail_user=${DOVECOT_MAIL_USER:-nobody}   # Dovecot refuses uid 0 for mail
  uid=$(id -u "$mail_user") || die "no such user: $mail_user"
  gid=$(id -g "$mail_user")
  ((uid != 0)) || die "DOVECOT_MAIL_USER must not be root"

  # Fresh state for every start: mailbox, indexes, sockets, log.
  local run
  run=$(run_dir "$dir")
  rm -rf "${dir:?}/mail" "${dir:?}/home" "${dir:?}/run" "${dir:?}/state" "$run"
  rm -f "$dir/dovecot.log" "$dir/dovecot.out"
  mkdir -p "$run" "$dir/state"
  for user in "${user_list[@]}"; do
    mkdir -p "$dir/mail/$user"/{cur,new,tmp} "$dir/home/$user"
  done
  [[ $run == "$dir/run" ]] || ln -s "$run" "$dir/run"
  chmod 0755 "$dir"
  # Plain-text password file, readable only by root (auth runs as root).
  ( umask 077; for user in "${user_list[@]}"; do printf '%s:{PLAIN}%s\n' "$user" "$password"; done >"$dir/users" )

  case $mm in
    2.3) write_conf_23 "$dir" "$port" "$uid" "$gid" "$run" >"$dir/dovecot.conf" ;;
    2.4) write_conf_24 "$dir" "$port" "$uid" "$gid" "$run" >"$dir/dovecot.conf" ;;
    *) die "unsupported Dovecot version '$version' (2.3 or 2.4 expected)" ;;
  esac

  local count
  for user in "${user_list[@]}"; do
    count=$(load_corpus "$corpus" "$dir/mail/$user")
  done
  user=${user_list[0]}
  chown -R "$uid:$gid" "$dir/mail" "$dir/home"
  # The imap process runs as $mail_user: it must reach the maildir through
  # every parent directory of DIR.
  runuser -u "$mail_user" -- test -w "$dir/mail/$user/cur" \
    || die "user $mail_user cannot write $dir/mail/$user/cur (a parent of $dir not searchable?); pick another DIR"

  # Own session (setsid): `stop` finds every child by session id, and a Ctrl-C
  # aimed at the caller does not reach the server. Backgrounded from a
  # non-interactive shell, setsid is not a group leader and so execs in place:
  # $! is dovecot's own pid.
  setsid dovecot -c "$dir/dovecot.conf" -F </dev/null >>"$dir/dovecot.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/dovecot.pid"

  local ok=0
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if greeting_ok "$port"; then ok=1; break; fi
    sleep 0.1
  done
  if ((ok == 0)); then
    if kill -0 "$pid" 2>/dev/null; then
      echo "dovecot-imap.sh: dovecot $version did not answer '* OK' on 127.0.0.1:$port within 10 s" >&2
    else
      echo "dovecot-imap.sh: dovecot $version exited during startup" >&2
    fi
    for f in "$dir/dovecot.out" "$dir/dovecot.log"; do
      [[ -s $f ]] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
    cmd_stop "$dir" || true
    exit 1
  fi
  echo "dovecot $version: imap on 127.0.0.1:$port, users $users, $count messages each (served as uid $uid), pid $pid, dir $dir"
}

# ---------------------------------------------------------------------------
case ${1:-} in
  install) shift; [[ $# -eq 0 ]] || usage; cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) usage ;;
esac
