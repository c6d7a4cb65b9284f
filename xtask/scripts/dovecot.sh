#!/usr/bin/env bash
# dovecot.sh — a private Dovecot IMAP or POP3 server on loopback, for side-by-side
# benchmarks against Tern's IMAP service (`cargo xtask bench imap`) and POP3 service
# (`cargo xtask bench pop3`). One script for both protocols: only the parts marked
# (imap) or (pop3) below differ.
#
#   dovecot.sh imap|pop3 install
#   dovecot.sh imap|pop3 start DIR PORT USER[,USER...] PASSWORD CORPUS_DIR
#   dovecot.sh imap|pop3 stop DIR
#
# install  Installs dovecot-core + dovecot-PROTOd (dovecot-imapd, dovecot-pop3d) from
#          Debian if the `dovecot` binary or the protocol's binary is missing (quiet
#          and a no-op when both are present). If the package install starts the
#          system-wide dovecot (ports 110/143 with /etc/dovecot), that instance is
#          stopped: only private instances may run.
# start    (Re)creates DIR/dovecot.conf and DIR/mail, loads every file of
#          CORPUS_DIR (sorted by name in byte order, subdirectories ignored;
#          one RFC 5322 message with CRLF line endings per file) into each
#          USER's maildir INBOX in that order, starts `dovecot -F` in its own
#          session (as root; mail is served as DOVECOT_MAIL_USER, default
#          nobody), writes its pid to DIR/dovecot.pid and waits up to 10 s for the
#          greeting on 127.0.0.1:PORT (imap: `* OK`, pop3: `+OK`). Any instance
#          already running from DIR is stopped first, so each start begins from
#          the full corpus (a POP3 benchmark that DELEs messages can simply restart).
# stop     Stops the instance of DIR (SIGTERM to the master, then to the imap/pop3
#          processes of still-connected clients that outlive it, SIGKILL after
#          10 s) and waits until every process of its session has exited.
#          Idempotent. The protocol argument is not used by stop (one DIR holds one
#          instance), but is required like everywhere else.
#
# Several users (comma-separated) each get the whole corpus: the IMAP benchmark gives
# every client a mailbox of its own, so clients do not contend on one mailbox; POP3
# allows one session per user at a time (pop3_lock_session), so concurrent clients need
# users of their own.
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
#   protocols = imap|pop3   Only the benchmarked protocol: no other imap/pop3/lmtp/
#                           submission services are started at all.
#   PROTO-login listeners   imap (pop3) on PORT; imaps (pop3s) disabled with port
#                           = 0 (their defaults 993 and 995 are privileged and not
#                           wanted).
#   ssl = no                Plain TCP, like the Tern side of the benchmark.
#   disable_plaintext_auth  = no (2.4: auth_allow_cleartext = yes): IMAP LOGIN and
#                           POP3 USER/PASS without TLS. (Dovecot already treats
#                           127.0.0.1 as "secured"; this keeps it working if that
#                           changes.)
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
#   mail_fsync (imap) = optimized
#                           Dovecot's default, set explicitly: the IMAP workload
#                           writes (APPEND, flag changes, EXPUNGE), and Tern
#                           acknowledges a write only once it is fsynced on a
#                           Raft majority, so Dovecot keeps the durability it
#                           ships with (fsync of new message files) rather than
#                           the `never` of the read-only POP3 benchmark.
#   mail_fsync (pop3) = never
#                           The benchmark measures protocol handling, not disk
#                           flushes (only index/uidlist writes are affected).
#   pop3_lock_session = yes (pop3) RFC 1939 exclusive maildrop lock (off by
#                           default): a second concurrent login for USER blocks
#                           for 10 s (not configurable in 2.3), then gets "-ERR
#                           [IN-USE] Mailbox is locked by another POP3 session."
#                           and is disconnected.
#   pop3_uidl_format        (pop3) %08Xu%08Xv (IMAP UID + UIDVALIDITY, hex), the
#                           recommended stable format; set explicitly so it never
#                           depends on Debian's conf.d defaults (not included).
#   mail_max_userip_connections = 1000
#                           The default of 10 per user+IP is not hit by the
#                           benchmark (one session per user), but (imap) a larger
#                           run or a manual check with several sessions should not
#                           turn into "* BYE [UNAVAILABLE] Maximum number of
#                           connections", and (pop3) an 11th simultaneous login
#                           should not turn into "-ERR [IN-USE] Maximum number of
#                           connections" instead of leaving the verdict to
#                           pop3_lock_session (which, note, waits up to 10 s -
#                           hard-coded - for the holder before its -ERR [IN-USE]).
#   default_login_user/default_internal_user
#                           dovenull/dovecot, the users the Debian package
#                           creates (the built-in defaults anyway; set explicitly).
#   service auth/auth-worker user = root
#                           They read DIR/users (mode 0600); as root they do not
#                           depend on DIR's parents being readable by `dovecot`.
#   PROTO-login service_count = 0, process_min_avail = process_limit = nproc
#                           Dovecot's documented "high-performance" login mode
#                           (2.4: restart_request_count = unlimited): a few
#                           long-lived login processes instead of forking one
#                           per connection - the fair setup for a benchmark.
#                           Each IMAP/POP3 session still gets its own imap/pop3
#                           process.
#   default_process_limit = 1000
#                           The default 100 would cap concurrent imap/pop3
#                           sessions (one process each) at 100.
#
# Maildir loading: Dovecot's maildir stores LF line endings on disk and adds the
# CRs back when serving IMAP or POP3, so each message is written with CRLF -> LF.
# The file name is "<T+n>.M<n>P1.bench,S=<lf-size>,W=<crlf-size>:2," in cur/: S= is
# the on-disk size, W= the "virtual" (CRLF) size which IMAP's RFC822.SIZE and POP3's
# LIST/STAT report, so Dovecot reports exactly the corpus file sizes without reading
# the messages. Dovecot assigns UIDs to new maildir files sorted by their leading
# timestamp, so message n of the corpus (name order) gets UID n and becomes POP3
# message n, as on the Tern side.
set -euo pipefail

PROG=dovecot.sh
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 imap|pop3 install | start DIR PORT USER[,USER...] PASSWORD CORPUS_DIR | stop DIR" >&2
  exit 2
}

# ---------------------------------------------------------------------------
# the protocol: everything below that differs between imap and pop3 is set here
# ---------------------------------------------------------------------------
PROTO=${1:-}
case $PROTO in
  imap)
    GREETING='* OK'          # greeting prefix, and the command that ends a session
    GOODBYE='a LOGOUT'
    MAIL_FSYNC=optimized     # see the header: IMAP writes, so keep Dovecot's durability
    ;;
  pop3)
    GREETING='+OK'
    GOODBYE='QUIT'
    MAIL_FSYNC=never         # see the header: the POP3 benchmark only reads
    ;;
  *) usage ;;
esac
shift
PROTO_BIN=/usr/lib/dovecot/$PROTO   # installed by dovecot-imapd / dovecot-pop3d on Debian

have_dovecot() { command -v dovecot >/dev/null 2>&1 && [[ -x $PROTO_BIN ]]; }

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------
cmd_install() {
  have_dovecot && return 0
  apt_install dovecot-core "dovecot-${PROTO}d"
  command -v dovecot >/dev/null 2>&1 || die "dovecot still missing after install"
  [[ -x $PROTO_BIN ]] || die "$PROTO_BIN still missing after install"
  # The master of the system instance is the one whose base_dir is /run/dovecot.
  local pid
  pid=$(pidfile_pid /run/dovecot/master.pid)
  stop_system_instance dovecot "$pid" "$pid"
}

# ---------------------------------------------------------------------------
# helpers for start/stop
# ---------------------------------------------------------------------------

# pid recorded in DIR/dovecot.pid if that process is still the dovecot master
# started with DIR/dovecot.conf (guards against pid reuse).
live_master_pid() {
  local dir=$1 pid cmdline
  pid=$(pidfile_pid "$dir/dovecot.pid")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  [[ $cmdline == *"$dir/dovecot.conf"* ]] && echo "$pid"
  return 0
}

# All processes in session SID (the master is started with setsid, so its
# children - login, auth, log, imap/pop3, ... - all share its session id).
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

# base_dir of DIR's instance (see the header: short fallback for long DIRs).
run_dir() {
  local dir=$1
  if ((${#dir} <= 60)); then
    echo "$dir/run"
  else
    echo "/tmp/dovecot-bench-$(printf '%s' "$dir" | md5sum | cut -c1-16)"
  fi
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
  local dir pid run
  dir=$(abs_dir "$1")
  run=$(run_dir "$dir")
  pid=$(live_master_pid "$dir")
  if [[ -n $pid ]]; then
    # SIGTERM to the master is what `doveadm stop` does. The master then stops
    # its helper services, but imap/pop3 processes of connected clients (and the
    # log process serving them) outlive it until their client disconnects: once
    # the master is gone, TERM the rest of its session, and KILL whatever is left
    # after 10 s more.
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone 10 "$pid"; then
      echo "$PROG: master $pid ($dir) ignored SIGTERM for 10 s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 5 "$pid" || true
    fi
    kill_leftovers "$dir" session_pids "$pid"
  fi
  rm -f "$dir/dovecot.pid"
  [[ $run == "$dir/run" ]] || rm -rf "$run"
}

# ---------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------

# write_conf MAJOR.MINOR DIR PORT UID GID RUN: DIR's dovecot.conf for PROTO on stdout,
# in 2.3 or 2.4 syntax (see the header for why each setting is there).
write_conf() {
  local mm=$1 dir=$2 port=$3 uid=$4 gid=$5 run=$6 nproc
  nproc=$(nproc 2>/dev/null || echo 2)
  # 2.4 wants its version settings before any other.
  [[ $mm == 2.3 ]] || printf 'dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n'
  cat <<CONF
# Generated by xtask/scripts/dovecot.sh $PROTO (Dovecot $mm) - see its header.
base_dir = $run
state_dir = $dir/state
instance_name = dovecot-bench-$port
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = $PROTO
ssl = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
first_valid_gid = 1
mail_fsync = $MAIL_FSYNC
mail_max_userip_connections = 1000
default_process_limit = 1000
service auth {
  user = root
}
service auth-worker {
  user = root
}
CONF
  local uidl='%08Xu%08Xv' login_mode='service_count = 0' address='    address = 127.0.0.1'
  if [[ $mm == 2.3 ]]; then
    cat <<CONF
disable_plaintext_auth = no
mail_location = maildir:$dir/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}
CONF
  else
    uidl='%{uid | hex(8)}%{uidvalidity | hex(8)}'
    login_mode='restart_request_count = unlimited'
    address=''
    cat <<CONF
auth_allow_cleartext = yes
mail_driver = maildir
mail_path = $dir/mail/%{user}
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
CONF
  fi
  if [[ $PROTO == pop3 ]]; then
    printf 'pop3_lock_session = yes\npop3_uidl_format = %s\n' "$uidl"
  fi
  cat <<CONF
service $PROTO-login {
  inet_listener $PROTO {
${address:+$address
}    port = $port
  }
  inet_listener ${PROTO}s {
    port = 0
  }
  $login_mode
  process_min_avail = $nproc
  process_limit = $nproc
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
      my $crlf = $lf + ($msg =~ tr/\n//);        # what IMAP/POP3 serve: LF -> CRLF
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
  valid_port "$port" || die "bad port: $port"
  split_users "$users" '^[A-Za-z0-9._@+-]+$'
  [[ $password != *:* && $password != *$'\n'* ]] || die "password must not contain ':' or newline"
  [[ -d $corpus ]] || die "corpus directory not found: $corpus"
  have_dovecot || die "dovecot/$PROTO not installed: run '$0 $PROTO install'"
  # Dovecot's master must be root to chroot the login processes and switch
  # to dovenull/dovecot/the mail user (a non-root master is not supported here).
  need_root start

  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  cmd_stop "$dir"                       # a previous instance from DIR, if any
  if port_open "$port"; then
    die "127.0.0.1:$port is already in use"
  fi

  local version mm uid gid mail_user
  version=$(dovecot --version 2>/dev/null | head -n1)
  mm=$(dovecot_major_minor)
  [[ $mm == 2.3 || $mm == 2.4 ]] || die "unsupported Dovecot version '$version' (2.3 or 2.4 expected)"
  mail_ids DOVECOT_MAIL_USER               # Dovecot refuses uid 0 for mail

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
  write_conf "$mm" "$dir" "$port" "$uid" "$gid" "$run" >"$dir/dovecot.conf"

  local count
  for user in "${user_list[@]}"; do
    count=$(load_corpus "$corpus" "$dir/mail/$user")
  done
  chown -R "$uid:$gid" "$dir/mail" "$dir/home"
  # The imap/pop3 process runs as $mail_user: it must reach the maildir through
  # every parent directory of DIR.
  must_reach "$mail_user" -w "$dir/mail/${user_list[0]}/cur" "$dir"

  # Own session (setsid): `stop` finds every child by session id, and a Ctrl-C
  # aimed at the caller does not reach the server. Backgrounded from a
  # non-interactive shell, setsid is not a group leader and so execs in place:
  # $! is dovecot's own pid.
  setsid dovecot -c "$dir/dovecot.conf" -F </dev/null >>"$dir/dovecot.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/dovecot.pid"

  if ! wait_greeting 10 "$port" "$GREETING" "$GOODBYE" "$pid"; then
    if kill -0 "$pid" 2>/dev/null; then
      echo "$PROG: dovecot $version did not answer '$GREETING' on 127.0.0.1:$port within 10 s" >&2
    else
      echo "$PROG: dovecot $version exited during startup" >&2
    fi
    show_tails "$dir/dovecot.out" "$dir/dovecot.log"
    cmd_stop "$dir" || true
    exit 1
  fi
  echo "dovecot $version: $PROTO on 127.0.0.1:$port, users $users, $count messages each (served as uid $uid), pid $pid, dir $dir"
}

# ---------------------------------------------------------------------------
case ${1:-} in
  install) shift; [[ $# -eq 0 ]] || usage; cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) usage ;;
esac
