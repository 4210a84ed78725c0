#!/usr/bin/env bash
# A private Dovecot IMAP server on loopback for the demo and the test suite.
#
# Everything (config, users, mail, certificate, state, log) lives under one
# directory so an instance never touches the system Dovecot service and can be
# thrown away with `rm -rf`. Relative --dir values are resolved against the
# current directory; the default is <repo>/.run/dovecot.
#
#   scripts/dovecot.sh start    [--dir DIR] [--port N] [--tls-port N] [--lease PID] [--oauth2-url URL] [--many-clients]
#   scripts/dovecot.sh stop     [--dir DIR] [--lease PID]
#   scripts/dovecot.sh status   [--dir DIR]        (exit 3 when not running)
#   scripts/dovecot.sh add-user NAME PASSWORD [--dir DIR]
#
# `start` writes DIR/env.json describing the running instance; the TypeScript
# test helpers (test/helpers/dovecot.ts) read it. --lease PID lets several test
# runs share one instance: `stop --lease PID` only stops it once no other live
# process holds a lease. A plain `stop` always stops it.
# --oauth2-url URL also accepts XOAUTH2 logins: Dovecot's oauth2 passdb POSTs each
# access token to URL (RFC 7662 introspection) and expects {"active":true,"username":...}.
# --many-clients sizes the instance for thousands of concurrent IDLE connections (benchmarks).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

die() { echo "dovecot.sh: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# ---------------------------------------------------------------- arguments
[[ $# -ge 1 ]] || usage
CMD=$1; shift
DIR="$REPO_ROOT/.run/dovecot"; PORT=""; TLS_PORT=""; LEASE=""; OAUTH2_URL=""; MANY=""; ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --tls-port) TLS_PORT=${2:?--tls-port needs a value}; shift 2 ;;
    --lease) LEASE=${2:?--lease needs a value}; shift 2 ;;
    --oauth2-url) OAUTH2_URL=${2:?--oauth2-url needs a value}; shift 2 ;;
    --many-clients) MANY=1; shift ;;
    -h|--help) usage ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ -z $OAUTH2_URL || $OAUTH2_URL =~ ^https?://[A-Za-z0-9.:/_-]+$ ]] || die "--oauth2-url must be a plain http(s) URL: $OAUTH2_URL"
for n in "$PORT" "$TLS_PORT" "$LEASE"; do
  [[ -z $n || $n =~ ^[0-9]+$ ]] || die "--port, --tls-port and --lease take numbers: $n"
done

DIR=$(realpath -m -- "$DIR")
# Dovecot splits passdb/userdb args on spaces and expands %, and env.json is
# written without a JSON encoder, so keep the path boring.
[[ $DIR =~ ^[A-Za-z0-9._/+-]+$ ]] || die "--dir must not contain spaces, quotes or %: $DIR"

CONF=$DIR/dovecot.conf
USERS=$DIR/users
LOG=$DIR/dovecot.log
ENV_JSON=$DIR/env.json
LEASES=$DIR/leases
HASH=$(printf %s "$DIR" | sha256sum | cut -c1-12)
# Unix socket paths are limited to ~108 bytes and Dovecot puts sockets up to
# ~25 characters deep inside base_dir, so a long DIR gets its sockets under
# /tmp instead (one directory per DIR, keyed by a hash of DIR).
if [[ ${#DIR} -le 70 ]]; then BASE_DIR=$DIR/run; else BASE_DIR=/tmp/mailsync-dovecot-$HASH; fi

# ---------------------------------------------------------------- helpers
lock() {  # serialises start/stop so concurrent test runs cannot interleave them
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 60 9 || die "timed out waiting for another start/stop in $DIR"
}

live_leases() {  # drops leases of dead processes, prints the others
  local f
  for f in "$LEASES"/*; do
    [[ -e $f ]] || continue
    if kill -0 "${f##*/}" 2>/dev/null; then echo "${f##*/}"; else rm -f "$f"; fi
  done
}

master_pid() {  # prints the pid of this DIR's running master, or fails
  local pid
  pid=$(cat "$BASE_DIR/master.pid" 2>/dev/null) || return 1
  # Guard against a stale pid file whose pid was reused by another program.
  [[ -n $pid && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dovecot ]] || return 1
  echo "$pid"
}

env_port() {  # reads a numeric field from env.json without needing jq
  sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$ENV_JSON" 2>/dev/null
}

greets() {  # true when an IMAP server greets on 127.0.0.1:$1
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && IFS= read -r l <&3 && [[ $l == "* OK"* ]]' \
    _ "$1" 2>/dev/null
}

port_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

free_port() {  # the kernel picks an unused port; tiny race window is fine for tests
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

imap_login_ok() {  # port user pass: a real IMAP LOGIN, not just a passdb lookup
  timeout 10 bash -c '
    q() { local s=${1//\\/\\\\}; printf "\"%s\"" "${s//\"/\\\"}"; }
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r l <&3
    printf "a LOGIN %s %s\r\n" "$(q "$2")" "$(q "$3")" >&3
    while IFS= read -r l <&3; do
      case $l in "a OK"*) printf "b LOGOUT\r\n" >&3; exit 0 ;; "a "*) exit 1 ;; esac
    done
    exit 1' _ "$@" 2>/dev/null
}

running_and_answering() {
  local port
  master_pid >/dev/null && port=$(env_port port) && [[ -n $port ]] && greets "$port"
}

ensure_dovecot() {
  command -v dovecot >/dev/null && command -v doveadm >/dev/null && return 0
  [[ $EUID -eq 0 ]] || die "dovecot is not installed; run as root to install dovecot-imapd"
  echo "dovecot.sh: installing dovecot-imapd..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-imapd
}

many_clients_conf() {
  [[ -n $MANY ]] || return 0
  cat <<'EOF2'
# --many-clients: thousands of IDLE connections at once. Dovecot's default is one imap
# process per connection and at most 1024 of them; each IDLE process also takes one of the
# kernel's inotify instances (fs.inotify.max_user_instances, often 128 per uid), and past
# that limit Dovecot silently polls every 30 s instead of pushing. Up to 100 connections
# per process keeps both far away (all users share the mail uid, so this is safe here).
# Caveat (measured): two connections IDLE on the same mailbox inside one process share an
# inotify watch, and when one leaves IDLE the other falls back to 30 s polling. Use this
# only where each mailbox has a single watcher.
default_client_limit = 20000
service imap {
  client_limit = 100
  service_count = 0
  process_limit = 200
}
service imap-login {
  # logins of thousands of clients arriving together: a few long-lived login processes
  service_count = 0
  client_limit = 1000
  process_min_avail = 2
}
service anvil {
  client_limit = 20000
}
EOF2
}

oauth2_conf() {  # with --oauth2-url: XOAUTH2 logins checked by token introspection
  [[ -n $OAUTH2_URL ]] || { echo "auth_mechanisms = plain login"; return; }
  cat >"$DIR/dovecot-oauth2.conf.ext" <<EOF
introspection_mode = post
introspection_url = $OAUTH2_URL
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF
  chgrp dovecot "$DIR/dovecot-oauth2.conf.ext"; chmod 640 "$DIR/dovecot-oauth2.conf.ext"
  # Only XOAUTH2 is offered (not OAUTHBEARER), so clients take the mechanism Gmail and
  # Microsoft 365 both speak. Passwords keep working for seeding mail.
  cat <<EOF
auth_mechanisms = plain login xoauth2
passdb {
  driver = oauth2
  mechanisms = xoauth2
  args = $DIR/dovecot-oauth2.conf.ext
}
EOF
}

write_conf() {
  # Self-contained: nothing from /etc/dovecot is included.
  cat >"$CONF.tmp" <<EOF
# Generated by scripts/dovecot.sh on every start; edits will be lost.
# instance_name tags process titles so this instance is easy to tell apart.
instance_name = mailsync-$HASH
base_dir = $BASE_DIR
state_dir = $DIR/state
protocols = imap
listen = 127.0.0.1

log_path = $LOG
info_log_path = $LOG
auth_verbose = yes

# TLS is offered (IMAPS and STARTTLS) but not required, so tests can also log
# in over plain loopback connections.
ssl = yes
ssl_cert = <$DIR/cert.pem
ssl_key = <$DIR/key.pem
disable_plaintext_auth = no
$(oauth2_conf)

# The master runs as root; mail is owned by the system "mail" user (uid 8),
# which is below Dovecot's default first_valid_uid of 500.
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = mail
mail_gid = mail
first_valid_uid = 8

passdb {
  driver = passwd-file
  args = scheme=PLAIN $USERS
  mechanisms = plain login
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$DIR/mail/%u
}
mail_location = maildir:~/Maildir

namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}

protocol imap {
  # Tests open many connections per user from one IP (default limit is 10).
  mail_max_userip_connections = 200
}

$(many_clients_conf)
service imap-login {
  inet_listener imap {
    port = $PORT
  }
  inet_listener imaps {
    port = $TLS_PORT
    ssl = yes
  }
}
EOF
  mv "$CONF.tmp" "$CONF"
}

# Each imap process in IDLE holds one of the kernel's inotify instances, counted per uid over
# the whole machine (every instance's processes run as "mail"); past the limit, 128 by
# default, Dovecot silently polls every 30 s instead of pushing. Several instances at once
# (parallel test runs, the benchmarks) reach it: raise it when we may.
raise_inotify_limit() {
  local f=/proc/sys/fs/inotify/max_user_instances
  [[ -w $f ]] || return 0
  (( $(cat "$f") >= 1024 )) || echo 1024 >"$f" 2>/dev/null || true
}

# ---------------------------------------------------------------- commands
cmd_start() {
  [[ $EUID -eq 0 ]] || die "must run as root (Dovecot switches to the mail user)"
  ensure_dovecot
  raise_inotify_limit
  mkdir -p "$DIR" "$DIR/state" "$DIR/mail"

  if master_pid >/dev/null; then
    if running_and_answering; then
      [[ -z $LEASE ]] || { mkdir -p "$LEASES"; touch "$LEASES/$LEASE"; }
      echo "dovecot: reusing running instance on 127.0.0.1:$(env_port port) (imaps $(env_port tlsPort)), dir $DIR"
      [[ -z $PORT$TLS_PORT ]] || echo "dovecot.sh: --port/--tls-port ignored; stop the instance first to change them" >&2
      exit 0
    fi
    echo "dovecot.sh: instance in $DIR is running but not answering; restarting it" >&2
    stop_instance >/dev/null
  fi

  [[ -n $PORT ]] || PORT=$(free_port)
  while [[ -z $TLS_PORT || $TLS_PORT == "$PORT" ]]; do TLS_PORT=$(free_port); done
  ! port_open "$PORT" || die "port $PORT is already in use"
  ! port_open "$TLS_PORT" || die "port $TLS_PORT is already in use"

  if [[ ! -s $DIR/cert.pem || ! -s $DIR/key.pem ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
    chmod 600 "$DIR/key.pem"
  fi

  # The auth process reads the users file as the "dovecot" user; the mail
  # processes run as "mail" and must own the mail tree.
  touch "$USERS"; chgrp dovecot "$USERS"; chmod 640 "$USERS"
  chown mail:mail "$DIR/mail"; chmod 750 "$DIR/mail"
  runuser -u mail -- test -w "$DIR/mail" ||
    die "the mail user cannot reach $DIR/mail; a parent directory is not world-searchable (chmod o+x it)"

  write_conf
  rm -rf "$ENV_JSON" "$LEASES"  # both describe a previous instance
  doveconf -c "$CONF" -n >/dev/null || die "invalid generated config $CONF"
  # 9>&- : the master must not inherit (and forever hold) the start/stop lock.
  dovecot -c "$CONF" 9>&- || die "dovecot failed to start; see $LOG"

  local deadline=$((SECONDS + 20))
  until greets "$PORT"; do
    master_pid >/dev/null || { tail -n 20 "$LOG" >&2 || true; die "dovecot exited during startup; see $LOG"; }
    [[ $SECONDS -lt $deadline ]] || die "dovecot did not answer on port $PORT within 20s; see $LOG"
    sleep 0.1
  done

  # Written last and atomically: its presence means "ready".
  printf '{"host":"127.0.0.1","port":%s,"tlsPort":%s,"dir":"%s","caFile":"%s","usersFile":"%s","log":"%s"}\n' \
    "$PORT" "$TLS_PORT" "$DIR" "$DIR/cert.pem" "$USERS" "$LOG" >"$ENV_JSON.tmp"
  mv "$ENV_JSON.tmp" "$ENV_JSON"
  [[ -z $LEASE ]] || { mkdir -p "$LEASES"; touch "$LEASES/$LEASE"; }
  echo "dovecot: started on 127.0.0.1:$PORT (imaps $TLS_PORT), dir $DIR"
}

stop_instance() {  # unconditional; prints whether anything was running
  local pid port deadline
  rm -rf "$LEASES"
  port=$(env_port port || true)
  if pid=$(master_pid); then
    kill -TERM "$pid"
    deadline=$((SECONDS + 15))
    while [[ -d /proc/$pid ]]; do
      if [[ $SECONDS -ge $deadline ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
  fi
  if [[ -n $port ]]; then
    deadline=$((SECONDS + 10))
    while port_open "$port"; do
      [[ $SECONDS -lt $deadline ]] || die "port $port still open after stopping dovecot"
      sleep 0.1
    done
  fi
  rm -f "$ENV_JSON"
  if [[ -n ${pid:-} ]]; then echo "dovecot: stopped (dir $DIR)"; else echo "dovecot: not running (dir $DIR)"; fi
}

cmd_stop() {
  local others
  if [[ -n $LEASE ]]; then
    rm -f "$LEASES/$LEASE"
    others=$(live_leases | tr '\n' ' ')
    if [[ -n $others ]]; then
      echo "dovecot: left running, still used by pid(s) $others(dir $DIR)"
      return
    fi
  fi
  stop_instance
}

cmd_status() {
  local pid
  if pid=$(master_pid) && running_and_answering; then
    echo "dovecot: running, pid $pid, imap 127.0.0.1:$(env_port port), imaps 127.0.0.1:$(env_port tlsPort), dir $DIR"
  else
    echo "dovecot: not running (dir $DIR)"
    exit 3
  fi
}

cmd_add_user() {
  [[ ${#ARGS[@]} -eq 2 ]] || usage
  local name=${ARGS[0]} pass=${ARGS[1]}
  # ':' separates passwd-file fields; keep names safe for %u in the home path.
  [[ $name =~ ^[A-Za-z0-9._@+-]+$ ]] || die "invalid user name: $name"
  [[ $pass != *:* && $pass != *$'\n'* && $pass != *$'\r'* && -n $pass ]] || die "password must be non-empty without ':' or newlines"
  [[ -f $USERS ]] || die "no users file in $DIR; run '$0 start --dir $DIR' first"
  ! grep -q "^$name:" "$USERS" || die "user $name already exists"
  printf '%s:{PLAIN}%s::::::\n' "$name" "$pass" >>"$USERS"
  local added_at=$EPOCHSECONDS

  local port; port=$(env_port port || true)
  if ! running_and_answering; then
    echo "dovecot: added $name (instance not running; login not checked)"
    return
  fi
  # Dovecot re-reads passwd-file when its mtime/size changes (no reload needed)
  # but checks at most once per wall-clock second: a login within the second
  # of the append can miss the new user and then costs a 2s failure delay.
  while [[ $EPOCHSECONDS -le $added_at ]]; do sleep 0.05; done
  local deadline=$((SECONDS + 10))
  until imap_login_ok "$port" "$name" "$pass"; do
    [[ $SECONDS -lt $deadline ]] || die "added $name but IMAP login fails; see $LOG"
    sleep 0.2
  done
  echo "dovecot: added $name (login verified)"
}

case $CMD in
  start) lock; cmd_start ;;
  stop) [[ ! -d $DIR ]] || lock; cmd_stop ;;
  status) cmd_status ;;
  add-user) cmd_add_user ;;
  *) usage ;;
esac
