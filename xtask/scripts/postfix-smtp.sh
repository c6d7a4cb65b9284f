#!/usr/bin/env bash
# postfix-smtp.sh — a private Postfix SMTP server on loopback, for side-by-side
# SMTP ingress benchmarks against Tern's SMTP service.
#
#   postfix-smtp.sh install
#   postfix-smtp.sh start DIR PORT DOMAIN USER[,USER...]
#   postfix-smtp.sh count DIR DOMAIN USER
#   postfix-smtp.sh stop DIR
#
# install  Installs Debian's `postfix` package if `postfix` or the smtpd daemon
#          is missing (quiet and a no-op when both are present). debconf is
#          preseeded with main_mailer_type "No configuration", so the package
#          writes no /etc/postfix/main.cf and no system instance is configured
#          to listen on port 25. If the package start nevertheless left a
#          system instance running, it is stopped (and disabled under systemd):
#          only private instances may run.
# start    (Re)creates a private instance under DIR: config_directory DIR/etc
#          (main.cf, master.cf, vmailbox), queue_directory DIR/queue,
#          data_directory DIR/data, maildirs under DIR/mail, log DIR/postfix.log.
#          Any instance already running from DIR is stopped first and all of
#          that state (queue, mail, log) is wiped, so each start begins empty.
#          Starts it with `postfix -c DIR/etc start` (as root) and waits up to
#          15 s for a "220" greeting on 127.0.0.1:PORT.
# count    Prints the number of messages delivered to USER@DOMAIN, i.e. files
#          in DIR/mail/DOMAIN/USER/new and .../cur (0 if the maildir is absent).
#          Delivery is asynchronous (after the 250): poll until it settles.
# stop     Stops the instance of DIR (`postfix -c DIR/etc stop`, i.e. SIGTERM to
#          the master), then makes sure no process of that instance is left:
#          SIGTERM to survivors, SIGKILL after 10 s. Idempotent.
#
# start and stop of the same DIR are serialized with flock(DIR/.postfix-smtp.lock).
#
# How an instance's processes are found: `postfix -c DIR/etc` exports
# MAIL_CONFIG=DIR/etc, and master plus every daemon it spawns keep it in their
# environment (it is in the default import_environment), so /proc/*/environ
# identifies exactly the processes of one instance, even orphaned ones, and is
# immune to pid reuse. The master's pid is DIR/queue/pid/master.pid.
#
# Private-instance traps solved here:
#   - No alternate_config_directories / multi_instance_directories entry in
#     /etc/postfix/main.cf is needed (and none is written; that file does not
#     even exist after a "No configuration" install): Postfix checks that
#     list only when a non-root user passes a non-default config directory
#     (to the set-gid postqueue/postdrop). As root, `postfix -c DIR/etc ...`
#     and e.g. `postqueue -c DIR/etc -p` (the instance's mailq) just work.
#     Mail is injected over SMTP only (no pickup service, see master.cf).
#   - Ownership: DIR/etc and DIR/queue must be root-owned and not group/other
#     writable (postfix-script check-warn); `postfix start` runs
#     `post-install create-missing`, which creates the queue subdirectories
#     (postfix-owned, maildrop/public postfix:postdrop) and data_directory
#     (postfix, 0700). The daemons run as `postfix` and the virtual delivery
#     agent as the mailbox user, so every parent of DIR must be searchable by
#     them (checked at start: DIR below a 0700 directory such as /root fails).
#   - chroot = n for every service: Debian's default master.cf chroots most
#     daemons into the queue directory, which needs copies of /etc files there
#     (Debian's configure-instance.sh does that only for the system instance).
#   - maillog_file must lie under maillog_file_prefixes (default /var,
#     /dev/stdout), so that is set to DIR; and maillog_file needs the `postlog`
#     service in master.cf (else "missing 'postlog' service" at start).
#
# Why each setting in the generated main.cf is there:
#   compatibility_level = 3.6  Current defaults, no backwards-compatibility
#                           warnings (Debian compiles the default as 0).
#   queue_directory, data_directory
#                           Under DIR: instances never touch /var/spool/postfix,
#                           /var/lib/postfix, the system instance or each other.
#   maillog_file = DIR/postfix.log, maillog_file_prefixes = DIR
#                           Logging to a file (Postfix >= 3.4; Debian 12 has
#                           3.7): these machines have no syslog.
#   syslog_name = postfix-bench-PORT
#                           Tells instances apart in logs.
#   myhostname = postfix-bench.localdomain, mydomain = localdomain
#                           Set explicitly: no gethostname()/DNS based guess.
#   inet_interfaces = 127.0.0.1, inet_protocols = ipv4
#                           Loopback, IPv4 only (no IPv6 probing).
#   mydestination = (empty), local_transport = error, alias_maps = (empty),
#   local_recipient_maps = (empty)
#                           No local(8) delivery and no /etc/aliases lookups:
#                           the only accepted destination is DOMAIN.
#   virtual_mailbox_domains = DOMAIN
#   virtual_mailbox_maps = texthash:DIR/etc/vmailbox
#                           "USER@DOMAIN DOMAIN/USER/" per user: the trailing
#                           slash means maildir. texthash needs no postmap; it
#                           is also smtpd's recipient validation, so unknown
#                           users get 550 at RCPT TO.
#   virtual_mailbox_base = DIR/mail
#   virtual_uid_maps/virtual_gid_maps = static:uid/gid of $POSTFIX_MAIL_USER
#                           (default nobody/nogroup): never root.
#   virtual_minimum_uid = 1 Accept any non-root mail user (the default 100
#                           would refuse low system uids).
#   mynetworks = 127.0.0.0/8
#   smtpd_relay_restrictions = reject_unauth_destination
#                           No relaying anywhere, not even for mynetworks
#                           (benchmark clients connect from 127.0.0.1, so the
#                           usual permit_mynetworks would make it an open relay
#                           for them). relay_domains = (empty).
#   default_transport = error, relay_transport = error
#                           Belt and braces: nothing ever leaves the machine
#                           (bounces to outside senders fail at once instead
#                           of queueing for days).
#   smtp_dns_support_level = disabled, lmtp_host_lookup = native,
#   smtp_host_lookup = native
#                           No DNS lookups that could stall on a machine
#                           without network (disable_dns_lookups is the
#                           deprecated spelling of the first).
#   smtpd_peername_lookup = no
#                           No reverse lookup of the client IP per connection
#                           (the name becomes "unknown"). Written only when
#                           `postconf -d` knows the parameter (3.7 does).
#   append_dot_mydomain = no, biff = no
#                           No address rewriting surprises, no comsat.
#   smtpd_tls_security_level = none
#                           Plain TCP, like the Tern side of the benchmark.
#   default_process_limit = 100
#                           Postfix's stock limit: up to 100 concurrent smtpd
#                           sessions (more clients wait in the listen queue).
#   Durability: left at the defaults. The cleanup daemon fsync()s the queue
#                           file (incoming/) before smtpd answers "250 2.0.0 Ok:
#                           queued" to the end of DATA (checked with strace), so
#                           an acknowledged message is on disk - the guarantee
#                           the Tern side must match. Postfix has no setting to
#                           turn that off; do NOT defeat it either (no
#                           eatmydata, no tmpfs queue_directory) or the
#                           comparison is meaningless. Delivery to the maildir
#                           (virtual(8), which fsyncs the message file too)
#                           happens afterwards, asynchronously.
#
# master.cf: only the services this setup uses, all with chroot = n. The one
# inet listener is smtpd on 127.0.0.1:PORT; there is no smtp service on 25,
# no pickup (nothing uses the maildrop queue), no tlsmgr, no smtp/lmtp/local
# delivery agents (the transports above never name them).
#
# Several instances (different DIRs and PORTs) can run at the same time: they
# share only the binaries and /etc/postfix's meta files (postfix-files,
# dynamicmaps.cf).
set -euo pipefail

PROG=postfix-smtp.sh
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 install | start DIR PORT DOMAIN USER[,USER...] | count DIR DOMAIN USER | stop DIR" >&2
  exit 2
}

export PATH=$PATH:/usr/sbin:/sbin
DAEMON_DIR=/usr/lib/postfix/sbin     # Debian's daemon_directory (checked below)

smtpd_bin() {
  local d
  d=$(postconf -dh daemon_directory 2>/dev/null || echo "$DAEMON_DIR")
  echo "${d:-$DAEMON_DIR}/smtpd"
}

have_postfix() {
  command -v postfix >/dev/null 2>&1 && command -v postconf >/dev/null 2>&1 \
    && [[ -x $(smtpd_bin) ]]
}

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------
# The system instance's master, if running (its pid file holds the pid of a `master`).
system_master_pid() {
  local pid
  pid=$(pidfile_pid /var/spool/postfix/pid/master.pid)
  if [[ -n $pid && $(readlink "/proc/$pid/exe" 2>/dev/null) == */master ]]; then
    echo "$pid"
  fi
  return 0
}

cmd_install() {
  if have_postfix; then
    return 0
  fi
  need_root install
  # "No configuration": no /etc/postfix/main.cf, so no system instance is set
  # up to listen on port 25.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt_install --no-install-recommends postfix
  have_postfix || die "postfix/smtpd still missing after install"

  # The postinst may have started the system instance (unless policy-rc.d
  # forbade it, or it had no main.cf): stop it (`postfix stop` first), and its
  # whole process group if it does not go.
  local pid
  pid=$(system_master_pid)
  stop_system_instance postfix "$pid" "-$pid" postfix stop
}

# ---------------------------------------------------------------------------
# helpers for start/stop
# ---------------------------------------------------------------------------
# Pids of every process of the instance whose config directory is CONF.
instance_pids() {
  local conf=$1 e p
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    grep -qzxF "MAIL_CONFIG=$conf" "$e" 2>/dev/null && echo "$p"
  done
  return 0
}

# Serialize start/stop of one DIR (a start racing a stop or another start of
# the same DIR would otherwise wipe a queue under a running master). The lock
# fd must not leak into the long-lived master: postfix is run with 9>&-.
LOCKED=0
lock_dir() {
  ((LOCKED)) && return 0
  exec 9>>"$1/.postfix-smtp.lock"
  flock -w 60 9 || die "timed out waiting for another start/stop of $1"
  LOCKED=1
}

# ---------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------
cmd_stop() {
  [[ $# -eq 1 ]] || usage
  [[ -d $1 ]] || return 0
  local dir conf pids
  dir=$(abs_dir "$1")
  conf=$dir/etc
  lock_dir "$dir"
  pids=$(instance_pids "$conf")
  [[ -n $pids ]] || return 0
  # The official way: postfix-script sends SIGTERM to the master, which
  # terminates its children, and waits up to 5 s for it.
  if [[ -f $conf/main.cf ]] && have_postfix; then
    postfix -c "$conf" stop >>"$dir/postfix.out" 2>&1 9>&- || true
  fi
  # Whatever is left (no master.pid, a daemon busy with a client, ...):
  # SIGTERM, then SIGKILL after 10 s.
  kill_leftovers "$dir" instance_pids "$conf"
  pids=$(instance_pids "$conf")
  [[ -z $pids ]] || die "processes of $dir survived SIGKILL: ${pids//$'\n'/ }"
  return 0
}

# ---------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------
write_main_cf() {
  local dir=$1 port=$2 domain=$3 uid=$4 gid=$5 peername=""
  if postconf -d smtpd_peername_lookup >/dev/null 2>&1; then
    peername="smtpd_peername_lookup = no"
  fi
  cat <<CONF
# Generated by xtask/scripts/postfix-smtp.sh - see its header.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir
syslog_name = postfix-bench-$port

myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4

mydestination =
local_transport = error:local delivery disabled
local_recipient_maps =
alias_maps =
alias_database =

virtual_mailbox_domains = $domain
virtual_mailbox_maps = texthash:$dir/etc/vmailbox
virtual_mailbox_base = $dir/mail
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1

mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = reject_unauth_destination
default_transport = error:relaying disabled
relay_transport = error:relaying disabled

smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
$peername

append_dot_mydomain = no
biff = no
smtpd_tls_security_level = none
smtp_tls_security_level = none

default_process_limit = 100
CONF
}

write_master_cf() {
  local port=$1
  cat <<CONF
# Generated by xtask/scripts/postfix-smtp.sh - see its header. chroot = n everywhere.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$port inet n  -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
}

cmd_start() {
  [[ $# -eq 4 ]] || usage
  local dir=$1 port=$2 domain=$3 users=$4 user
  valid_port "$port" || die "bad port: $port"
  [[ $domain =~ ^[A-Za-z0-9.-]+$ ]] || die "bad domain: $domain"
  split_users "$users" '^[A-Za-z0-9._+-]+$'
  have_postfix || die "postfix not installed: run '$0 install'"
  # master must be root (it binds the socket, then daemons drop to `postfix`).
  need_root start

  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  [[ $dir =~ ^[A-Za-z0-9/._+-]+$ ]] || die "DIR must not contain spaces or special characters: $dir"
  [[ $dir != / ]] || die "DIR must not be /"   # start wipes DIR/etc etc.
  lock_dir "$dir"
  cmd_stop "$dir"                       # a previous instance from DIR, if any
  if port_open "$port"; then
    die "127.0.0.1:$port is already in use"
  fi

  local uid gid mail_user version
  version=$(postconf -dh mail_version 2>/dev/null || echo unknown)
  mail_ids POSTFIX_MAIL_USER
  id -u postfix >/dev/null 2>&1 || die "no 'postfix' user: reinstall the postfix package"

  # Fresh state for every start: config, queue, data, mailboxes, log.
  rm -rf "${dir:?}/etc" "${dir:?}/queue" "${dir:?}/data" "${dir:?}/mail"
  rm -f "$dir/postfix.log" "$dir/postfix.out"
  chmod 0755 "$dir"
  # Root-owned, not group/other writable (postfix-script check-warn).
  install -d -o root -g root -m 0755 "$dir/etc" "$dir/queue"
  install -d -o postfix -g postfix -m 0700 "$dir/data"
  install -d -o "$uid" -g "$gid" -m 0755 "$dir/mail"
  write_main_cf "$dir" "$port" "$domain" "$uid" "$gid" >"$dir/etc/main.cf"
  write_master_cf "$port" >"$dir/etc/master.cf"
  for user in "${user_list[@]}"; do
    printf '%s@%s %s/%s/\n' "$user" "$domain" "$domain" "$user"
    install -d -o "$uid" -g "$gid" -m 0700 "$dir/mail/$domain" \
      "$dir/mail/$domain/$user" "$dir/mail/$domain/$user/new" \
      "$dir/mail/$domain/$user/cur" "$dir/mail/$domain/$user/tmp"
  done >"$dir/etc/vmailbox"
  chmod 0644 "$dir/etc/main.cf" "$dir/etc/master.cf" "$dir/etc/vmailbox"
  touch "$dir/postfix.log"

  # The daemons run as `postfix` (reading DIR/etc, DIR/queue) and virtual(8)
  # delivers as $mail_user: both must reach DIR through all its parents.
  must_reach postfix -r "$dir/etc/vmailbox" "$dir"
  must_reach "$mail_user" -w "$dir/mail/$domain/${user_list[0]}/new" "$dir"

  # create-missing (queue subdirectories), integrity checks, then master -w,
  # which returns once the master has initialized (or failed to).
  if ! postfix -c "$dir/etc" start >>"$dir/postfix.out" 2>&1 9>&-; then
    echo "$PROG: postfix $version failed to start" >&2
    show_tails "$dir/postfix.out" "$dir/postfix.log"
    cmd_stop "$dir" || true
    exit 1
  fi

  local pid=""
  if ! wait_greeting 15 "$port" 220 QUIT; then
    echo "$PROG: postfix $version did not answer 220 on 127.0.0.1:$port within 15 s" >&2
    show_tails "$dir/postfix.out" "$dir/postfix.log"
    cmd_stop "$dir" || true
    exit 1
  fi
  [[ -s $dir/queue/pid/master.pid ]] && pid=$(tr -d ' \n' <"$dir/queue/pid/master.pid")
  echo "postfix $version: smtp on 127.0.0.1:$port, domain $domain, users $users (maildirs as uid $uid), master pid ${pid:-?}, dir $dir"
}

# ---------------------------------------------------------------------------
# count
# ---------------------------------------------------------------------------
cmd_count() {
  [[ $# -eq 3 ]] || usage
  local dir=$1 domain=$2 user=$3 md n=0 sub
  md=$dir/mail/$domain/$user
  for sub in new cur; do
    [[ -d $md/$sub ]] || continue
    n=$((n + $(find "$md/$sub" -mindepth 1 -maxdepth 1 -type f | wc -l)))
  done
  echo "$n"
}

# ---------------------------------------------------------------------------
case ${1:-} in
  install) shift; [[ $# -eq 0 ]] || usage; cmd_install ;;
  start) shift; cmd_start "$@" ;;
  count) shift; cmd_count "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) usage ;;
esac
