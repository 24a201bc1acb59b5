#!/usr/bin/env bash
# Starts the six processes in the background (logs to $RUN_DIR/logs/<name>.log) and returns once
# every /health/ready answers 200. Ports: <NAME>_HTTP_PORT, else the defaults of DESIGN §2 (the gateway's
# ops endpoints: GATEWAY_OPS_PORT, default 8006). Each process gets the paths of its own secrets only
# (deploy/secrets.sh, in $SECRETS_DIR), as <SETTING>_FILE variables.
# Usage: deploy/services.sh start|stop|status
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
READY_TIMEOUT=${READY_TIMEOUT:-90}
SECRETS_DIR=${SECRETS_DIR:-$RUN_DIR/secrets}
# name:module:default port; projectors first so their indexes exist when the query-service starts
SERVICES="command-service:command_service:8001 projector-order-list:projector_order_list:8003
projector-analytics:projector_analytics:8004 projector-catalog:projector_catalog:8005
query-service:query_service:8002 gateway:gateway:8000"

port_of() { local var; var=$(echo "$1" | tr 'a-z-' 'A-Z_')_HTTP_PORT; echo "${!var:-$2}"; }
pid_alive() { # a killed process not yet reaped by its new parent is a zombie: dead
  local state
  [ -f "$1" ] && state=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) && [[ $state != Z* ]]
}
ops_port_of() { if [ "$1" = gateway ]; then echo "${GATEWAY_OPS_PORT:-8006}"; else port_of "$1" "$2"; fi; }
secrets_of() { # the <SETTING>_FILE variables of one process
  local s=$SECRETS_DIR
  echo "NATS_PASSWORD_FILE=$s/nats-$1"
  case $1 in
    gateway) echo "ACTOR_KEY_FILE=$s/actor-key JWT_SECRET_FILE=$s/jwt-secret" ;;
    command-service) echo "ACTOR_KEY_FILE=$s/actor-key DATABASE_PASSWORD_FILE=$s/postgres-command-service" ;;
    query-service) echo "ACTOR_KEY_FILE=$s/actor-key REDIS_PASSWORD_FILE=$s/redis-query-service" ;;
    projector-analytics) echo "OPS_TOKEN_FILE=$s/ops-token REDIS_PASSWORD_FILE=$s/redis-projector-analytics" ;;
    projector-*) echo "OPS_TOKEN_FILE=$s/ops-token" ;;
  esac
}
ready() { python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }

start() {
  mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs"
  SECRETS_DIR=$SECRETS_DIR "$ROOT/deploy/secrets.sh"
  for entry in $SERVICES; do
    IFS=: read -r name module default <<<"$entry"
    local port; port=$(port_of "$name" "$default")
    if pid_alive "$RUN_DIR/pids/$name.pid"; then echo "$name already running"; continue; fi
    local pidfile=$RUN_DIR/pids/$name.pid
    rm -f "$pidfile"
    # setsid may fork, so $! need not be the service: the shell writes its own pid, then becomes it
    # shellcheck disable=SC2046  # (paths without spaces, one word each)
    env HTTP_PORT="$port" PID_FILE="$pidfile" $(secrets_of "$name") setsid bash -c 'echo $$ >"$PID_FILE"; exec "$@"' "$name" \
      "$PYTHON" -m "$module" >>"$RUN_DIR/logs/$name.log" 2>&1 </dev/null &
    for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.05; done
  done
  local deadline=$((SECONDS + READY_TIMEOUT))
  for entry in $SERVICES; do
    IFS=: read -r name module default <<<"$entry"
    local url; url="http://127.0.0.1:$(ops_port_of "$name" "$default")/health/ready"
    until ready "$url"; do
      if ! pid_alive "$RUN_DIR/pids/$name.pid"; then
        echo "$name exited; last log lines:" >&2; tail -n 20 "$RUN_DIR/logs/$name.log" >&2; exit 1
      fi
      [ $SECONDS -lt $deadline ] || { echo "$name not ready after ${READY_TIMEOUT}s ($url); see $RUN_DIR/logs/$name.log" >&2; exit 1; }
      sleep 0.3
    done
    echo "ready  $name  $url"
  done
}

stop() {
  for entry in $SERVICES; do
    IFS=: read -r name _ _ <<<"$entry"
    local pidfile=$RUN_DIR/pids/$name.pid
    if pid_alive "$pidfile"; then kill -TERM "$(cat "$pidfile")"; fi
  done
  for entry in $SERVICES; do
    IFS=: read -r name _ _ <<<"$entry"
    local pidfile=$RUN_DIR/pids/$name.pid
    for _ in $(seq 150); do pid_alive "$pidfile" || break; sleep 0.1; done
    if pid_alive "$pidfile"; then kill -KILL "$(cat "$pidfile")"; echo "$name killed after 15s"; else echo "$name stopped"; fi
    rm -f "$pidfile"
  done
}

status() {
  local rc=0
  for entry in $SERVICES; do
    IFS=: read -r name _ default <<<"$entry"
    if ready "http://127.0.0.1:$(ops_port_of "$name" "$default")/health/ready"; then echo "$name: ready"
    elif pid_alive "$RUN_DIR/pids/$name.pid"; then echo "$name: running, not ready"; rc=1
    else echo "$name: down"; rc=1; fi
  done
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
