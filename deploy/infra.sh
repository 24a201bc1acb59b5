#!/usr/bin/env bash
# Installs (if missing) and starts NATS+JetStream, PostgreSQL, Redis and OpenSearch on loopback.
# Data, logs and pid files live under $RUN_DIR (default: <repo>/.run). Idempotent. A start that
# fails prints the cause (the end of the failing part's log) and stops what it had started.
# Usage: deploy/infra.sh start|stop|status [nats|postgres|redis|opensearch ...]  (default: all four)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
LOGS=$RUN_DIR/logs
NATS_PORT=${NATS_PORT:-4222}
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
SECRETS_DIR=${SECRETS_DIR:-$RUN_DIR/secrets}  # the stores' passwords (deploy/secrets.sh)
PG_DB=${PG_DB:-shop}
# NATS: a current release built from the Go module proxy with the machine's Go toolchain (Debian's is
# 2.9.10, from 2022), and its CLI; cached per version under <repo>/.run/bin, shared by every RUN_DIR
NATS_SERVER_VERSION=v2.15.2
NATS_CLI_VERSION=v0.5.0
BIN_DIR=$ROOT/.run/bin
NATS_SERVER=$BIN_DIR/nats-server-$NATS_SERVER_VERSION

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }
STARTED=()   # what this start launched, so that a failure stops it again
CURRENT=""   # the part being started, whose log tells why a start failed

secret() { cat "$SECRETS_DIR/$1"; }

apt_install() { RUN_DIR=$RUN_DIR "$ROOT/deploy/apt-install.sh" "$@"; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

go_build() { # package version target: `go install` into a scratch folder, then moved into place whole
  [ -x "$3" ] && return
  command -v go >/dev/null || die "building $1 needs the Go toolchain (go), which is not installed"
  log "building $1@$2 with $(go version | cut -d' ' -f3) (once; cached in $BIN_DIR)"
  local scratch
  scratch=$(mktemp -d)
  GOBIN=$scratch go install "$1@$2" >&2 || die "go install $1@$2 failed"
  mkdir -p "$BIN_DIR"
  mv "$scratch"/* "$3.tmp.$$" && mv "$3.tmp.$$" "$3"  # the one binary it built
  rm -rf "$scratch"
}

ensure_installed() {
  local missing=()
  go_build github.com/nats-io/nats-server/v2 "$NATS_SERVER_VERSION" "$NATS_SERVER"
  go_build github.com/nats-io/natscli/nats "$NATS_CLI_VERSION" "$BIN_DIR/nats-$NATS_CLI_VERSION"
  ln -sf "nats-$NATS_CLI_VERSION" "$BIN_DIR/nats"
  ln -sf "nats-server-$NATS_SERVER_VERSION" "$BIN_DIR/nats-server"
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

pid_alive() { # a killed process not yet reaped by its new parent is a zombie: dead
  local state
  [ -f "$1" ] && state=$(ps -o stat= -p "$(head -n 1 "$1")" 2>/dev/null) && [[ $state != Z* ]]
}

wait_for() { # name deadline_seconds command...
  local name=$1 deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$name did not become ready; see $LOGS"
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_ok() { python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"; }

# --- NATS with JetStream -------------------------------------------------------------------
# One node by default; NATS_CLUSTER=3 starts three on loopback as one JetStream cluster (its routes
# log in as the user `route`). Node i listens on the i-th port of NATS_PORTS, NATS_MONITOR_PORTS and
# NATS_ROUTE_PORTS (comma-separated; by default consecutive from NATS_PORT, NATS_MONITOR_PORT, 6222).
NATS_CLUSTER=${NATS_CLUSTER:-1}
nats_ports() { # variable base: the nodes' ports, one a line
  local list=${!1:-}
  if [ -n "$list" ]; then tr ',' '\n' <<<"$list"; else seq "$2" "$(($2 + NATS_CLUSTER - 1))"; fi
}
mapfile -t NATS_CLIENT_PORTS < <(nats_ports NATS_PORTS "$NATS_PORT")
mapfile -t NATS_HTTP_PORTS < <(nats_ports NATS_MONITOR_PORTS "${NATS_MONITOR_PORT:-8222}")
mapfile -t NATS_CLUSTER_PORTS < <(nats_ports NATS_ROUTE_PORTS "${NATS_ROUTE_PORT:-6222}")
nats_dir() { if [ "$NATS_CLUSTER" = 1 ]; then echo "$RUN_DIR/nats"; else echo "$RUN_DIR/nats-$1"; fi; }
nats_dirs() { # every node started here and not stopped since (killed ones included)
  local pid
  for pid in "$RUN_DIR"/nats/nats.pid "$RUN_DIR"/nats-[0-9]*/nats.pid; do if [ -f "$pid" ]; then dirname "$pid"; fi; done
}

nats_start() {
  local i urls=()
  for i in $(seq "$NATS_CLUSTER"); do
    nats_node_start "$i"
    urls+=("nats://127.0.0.1:${NATS_CLIENT_PORTS[i - 1]}")
  done
  for i in $(seq "$NATS_CLUSTER"); do  # JetStream answers (a cluster: once it has elected its meta leader)
    wait_for nats 60 http_ok "http://127.0.0.1:${NATS_HTTP_PORTS[i - 1]}/healthz"
  done
  # what deploy/services.sh gives the processes (where NATS_URL and NATS_STREAM_REPLICAS are not set)
  printf 'NATS_URL=%s\nNATS_STREAM_REPLICAS=%s\n' "$(IFS=,; echo "${urls[*]}")" "$((NATS_CLUSTER < 3 ? 1 : 3))" \
    >"$RUN_DIR/nats.env"
}

nats_node_start() { # node number, from 1
  local dir port=${NATS_CLIENT_PORTS[$1 - 1]} cluster="" routes=() i
  dir=$(nats_dir "$1")
  if pid_alive "$dir/nats.pid"; then log "nats node $1 already running"; return; fi
  port_open "$port" && die "port $port is taken by another process"
  mkdir -p "$dir/jetstream"
  STARTED+=(nats)
  if [ "$NATS_CLUSTER" != 1 ]; then
    for i in $(seq "$NATS_CLUSTER"); do routes+=("\$NATS_ROUTE_$i"); done
    cluster="server_name: shop-nats-$1
cluster {
  name: shop
  listen: 127.0.0.1:${NATS_CLUSTER_PORTS[$1 - 1]}
  authorization { user: route, password: \$ROUTE_NATS_PASSWORD }
  routes: [$(IFS=,; echo "${routes[*]}")]
}"
  fi
  # the users and permissions of docker-compose (one list: deploy/nats/auth.conf), their passwords
  # from deploy/secrets.sh in the server's environment; nats-server includes only relative paths
  cp "$ROOT/deploy/nats/auth.conf" "$dir/auth.conf"
  cat >"$dir/nats.conf" <<EOF
listen: 127.0.0.1:$port
http: 127.0.0.1:${NATS_HTTP_PORTS[$1 - 1]}
pid_file: "$dir/nats.pid"
max_payload: 1MB
jetstream {
  store_dir: "$dir/jetstream"
  max_memory_store: 256MB
  max_file_store: 4GB
}
$cluster
include "auth.conf"
EOF
  (
    eval "$(RUN_DIR=$RUN_DIR SECRETS_DIR=$SECRETS_DIR "$ROOT/deploy/secrets.sh" nats-env)"
    for i in $(seq "$NATS_CLUSTER"); do  # each node's route with its password, from the environment (a node skips its own)
      export "NATS_ROUTE_$i=nats-route://route:$ROUTE_NATS_PASSWORD@127.0.0.1:${NATS_CLUSTER_PORTS[i - 1]}"
    done
    exec setsid nohup "$NATS_SERVER" -c "$dir/nats.conf" >>"$LOGS/$(basename "$dir").log" 2>&1 </dev/null 9>&-
  ) &
  wait_for nats 30 port_open "$port"
  log "nats up on 127.0.0.1:$port (JetStream store $dir/jetstream; users of deploy/nats/auth.conf)"
}
nats_stop() {
  local dir
  for dir in $(nats_dirs); do stop_pidfile "$(basename "$dir")" "$dir/nats.pid" && rm -f "$dir/nats.pid"; done
  rm -f "$RUN_DIR/nats.env"
}
nats_status() {
  local dir up=0 down=0
  for dir in $(nats_dirs); do if pid_alive "$dir/nats.pid"; then up=$((up + 1)); else down=$((down + 1)); fi; done
  [ $up -gt 0 ] && [ $down -eq 0 ] && { echo "nats: up ($up node(s))"; return; }
  echo "nats: down ($down of $((up + down)) node(s))"; return 1
}

# --- PostgreSQL (runs as Debian's postgres user when we are root) ---------------------------
pg_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
# (from /: the postgres user may not be able to enter the current folder)
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
# The data directory: under $RUN_DIR when the postgres user can reach it; a checkout in a folder it
# cannot enter (root's 0700 home, mktemp -d) keeps it in postgres's own home, one per checkout.
pg_data() {
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$RUN_DIR" 2>/dev/null; then
    echo "$RUN_DIR/postgres"
  else
    echo "$(getent passwd postgres | cut -d: -f6)/shop-$(printf %s "$RUN_DIR" | sha256sum | cut -c1-12)"
  fi
}

pg_start() {
  local data bin; data=$(pg_data); bin=$(pg_bin)
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then log "postgres already running"; return; fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another process"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    chown "$(pg_user)" "$data"; chmod 700 "$data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >>"$LOGS/postgres.log" 2>&1 || die "initdb failed"
  fi
  STARTED+=(pg)
  # the log is opened here, not by the server: the postgres user need not reach $LOGS
  as_pg "$bin/pg_ctl" -D "$data" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='$data' -c max_connections=200 -c fsync=${PG_FSYNC:-on}" \
    >>"$LOGS/postgres.log" 2>&1 9>&- || die "postgres did not start"  # (die outside the log's redirection)
  local psql=("$bin/psql" -h "$data" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
  # The command-service's role `shop` owns the database and so its tables: the only role that may write
  # the event store. `shop_ops` (the tests, the bench) may create databases and end their sessions, and has
  # no right on `shop`'s tables. Passwords set on every start, through stdin (never on a command line).
  as_pg "${psql[@]}" <<SQL
select 'create role shop' where not exists (select from pg_roles where rolname = 'shop') \gexec
select 'create role shop_ops' where not exists (select from pg_roles where rolname = 'shop_ops') \gexec
alter role shop login nocreatedb nocreaterole password '$(secret postgres-command-service)';
alter role shop_ops login createdb nocreaterole password '$(secret postgres-ops)';
grant pg_signal_backend to shop_ops;
select 'create database $PG_DB owner shop' where not exists (select from pg_database where datname = '$PG_DB') \gexec
SQL
  log "postgres up on 127.0.0.1:$PG_PORT (database $PG_DB, data $data; roles shop and shop_ops)"
}
pg_stop() {
  local data bin; data=$(pg_data); bin=$(pg_bin)
  [ -n "$bin" ] && [ -f "$data/postmaster.pid" ] || { log "postgres not running"; return; }
  as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  log "postgres stopped"
}

# --- Redis ------------------------------------------------------------------------------------
redis_start() {
  local dir=$RUN_DIR/redis
  if pid_alive "$dir/redis.pid"; then log "redis already running"; return; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process"
  mkdir -p "$dir"
  # the users of deploy/redis/users.acl, their passwords from deploy/secrets.sh stored hashed
  (
    umask 077
    grep '^user ' "$ROOT/deploy/redis/users.acl" | while read -r _ name rules; do
      if [ "$name" = default ]; then echo "user $name $rules"; else echo "user $name $rules #$(redis_hash "$name")"; fi
    done >"$dir/users.acl"
  )
  STARTED+=(redis)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --daemonize yes --aclfile "$dir/users.acl" \
    --pidfile "$dir/redis.pid" --logfile "$LOGS/redis.log" --appendonly yes --appendfsync always --save "" 9>&-
  # answers PONG only once it has loaded its data (an append-only file of a big run takes a while; meanwhile
  # LOADING, which a projector starting then would take for a failure)
  wait_for redis 300 redis_ready
  log "redis up on 127.0.0.1:$REDIS_PORT (ACL users projector-analytics, query-service, ops; no default user)"
}
redis_ready() { REDISCLI_AUTH="$(secret redis-ops)" redis-cli --user ops -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; }
redis_hash() { secret "redis-$1" | sha256sum | cut -d' ' -f1; }
redis_stop() { stop_pidfile redis "$RUN_DIR/redis/redis.pid"; }

stop_pidfile() { # name pidfile
  local pid
  if ! pid_alive "$2"; then log "$1 not running"; return; fi
  pid=$(head -n 1 "$2"); kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { log "$1 stopped"; return; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true; log "$1 killed"
}

# --- OpenSearch (its own script: built from Maven Central jars) -------------------------------
opensearch() { RUN_DIR=$RUN_DIR bash "$ROOT/deploy/opensearch/run.sh" "$@"; }

mkdir -p "$LOGS"
exec 9>"$RUN_DIR/.infra.lock"
flock 9  # one start or stop at a time: two racing starts would launch two of everything
# (every daemon below is started with 9>&-, or it would hold the lock for as long as it runs)

wanted() { [ ${#PARTS[@]} -eq 0 ] || [[ " ${PARTS[*]} " == *" $1 "* ]]; }

start_failed() { # on exit: after a failure, the failing part's log and a stop of what this start launched
  local rc=$? part
  [ $rc -ne 0 ] || return 0
  if [ -n "$CURRENT" ] && [ -s "$LOGS/$CURRENT.log" ]; then
    printf '[infra] %s failed to start; the end of %s:\n' "$CURRENT" "$LOGS/$CURRENT.log" >&2
    tail -n 15 "$LOGS/$CURRENT.log" | sed 's/^/[infra]   | /' >&2
  fi
  [ -z "${os_pid:-}" ] || { kill "$os_pid" 2>/dev/null; wait "$os_pid" 2>/dev/null; } || true  # still booting
  [ "${os_was_up:-1}" = 1 ] || opensearch stop >/dev/null 2>&1 || true
  for part in "${STARTED[@]}"; do "${part}_stop" >/dev/null 2>&1 || true; done
  log "stopped what this start had launched"
  exit $rc
}

PARTS=("${@:2}")
case "${1:-}" in
  start)
    ensure_installed
    RUN_DIR=$RUN_DIR SECRETS_DIR=$SECRETS_DIR "$ROOT/deploy/secrets.sh"
    started=$SECONDS
    trap start_failed EXIT
    if wanted opensearch; then  # the slowest part: let it boot while the others start
      os_was_up=0; opensearch status >/dev/null 2>&1 && os_was_up=1
      opensearch start 9>&- & os_pid=$!
    fi
    if wanted nats; then CURRENT=nats; nats_start; fi
    if wanted postgres; then CURRENT=postgres; pg_start; fi
    if wanted redis; then CURRENT=redis; redis_start; fi
    if wanted opensearch; then CURRENT=opensearch; wait "$os_pid" || die "opensearch failed to start"; fi
    trap - EXIT
    log "infrastructure ready in $((SECONDS - started))s"
    ;;
  stop)
    if wanted opensearch; then opensearch stop || true; fi
    if wanted redis; then redis_stop; fi
    if wanted postgres; then pg_stop; fi
    if wanted nats; then nats_stop; fi
    ;;
  status)
    rc=0
    nats_status || rc=1
    as_pg "$(pg_bin)/pg_ctl" -D "$(pg_data)" status >/dev/null 2>&1 && echo "postgres: up" || { echo "postgres: down"; rc=1; }
    pid_alive "$RUN_DIR/redis/redis.pid" && echo "redis: up" || { echo "redis: down"; rc=1; }
    opensearch status || rc=1
    exit $rc
    ;;
  *) echo "usage: $0 start|stop|status [nats|postgres|redis|opensearch ...]" >&2; exit 2 ;;
esac
