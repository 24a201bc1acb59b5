#!/usr/bin/env bash
# Starts the six processes in the background (logs to $RUN_DIR/logs/<name>.log) and returns once
# every /health/ready answers 200. Ports: <NAME>_HTTP_PORT, else the defaults of DESIGN §2 (the gateway's
# ops endpoints: GATEWAY_OPS_PORT, default 8006). Each process gets the paths of its own secrets only
# (deploy/secrets.sh, in $SECRETS_DIR), as <SETTING>_FILE variables. NATS_URL and NATS_STREAM_REPLICAS,
# where not set, are those of the NATS that deploy/infra.sh started (one node or a cluster).
# Replicas: <NAME>_REPLICAS (COMMAND_SERVICE_REPLICAS, QUERY_SERVICE_REPLICAS, GATEWAY_REPLICAS,
# PROJECTOR_CATALOG_REPLICAS, ...; default 1; the processes of a projector share its PROJECTION_PARTITIONS, see
# shop.projection.lease). Replica n > 1 is <name>-<n> (its pid file and log) on <NAME>_HTTP_PORT_<n>,
# else the first one's port + 100 * (n - 1) (the gateway's ops port: GATEWAY_OPS_PORT_<n>, likewise).
# CPU weight: <NAME>_NICE, the nice of the process's scheduling autogroup (see cpu_weight below).
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
REPLICATED="command-service query-service gateway projector-order-list projector-analytics projector-catalog"
if [ -f "$RUN_DIR/nats.env" ]; then
  while IFS='=' read -r var value; do [ -n "${!var:-}" ] || export "$var=$value"; done <"$RUN_DIR/nats.env"
fi

variable() { echo "$1" | tr 'a-z-' 'A-Z_'; }
setting() { local var=$1; echo "${!var:-$2}"; }  # the variable's value, else the default
instances() { # one line per process to run: instance module port [ops port]
  local entry name module default var replicas n port ops
  for entry in $SERVICES; do
    IFS=: read -r name module default <<<"$entry"
    var=$(variable "$name")
    replicas=1
    [[ " $REPLICATED " == *" $name "* ]] && replicas=$(setting "${var}_REPLICAS" 1)
    port=$(setting "${var}_HTTP_PORT" "$default")
    ops=$([ "$name" != gateway ] || setting GATEWAY_OPS_PORT 8006)
    echo "$name $module $port $ops"
    for n in $(seq 2 "$replicas"); do
      echo "$name-$n $module $(setting "${var}_HTTP_PORT_$n" $((port + 100 * (n - 1)))) \
$([ -z "$ops" ] || setting "GATEWAY_OPS_PORT_$n" $((ops + 100 * (n - 1))))"
    done
  done
}
pid_alive() { # a killed process not yet reaped by its new parent is a zombie: dead
  local state
  [ -f "$1" ] && state=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) && [[ $state != Z* ]]
}
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
# CPU weight (deploy/cpu-weight.sh): the processes an event passes on its way to /v1/sync, the projectors and
# the gateway, each use little CPU but wake for every event; at one session's share each they waited behind
# the busy ones: a scratch probe at 103 orders/s on 2 cores saw the gateway's hop from a position's announcement
# to its /v1/sync message at p99 30-48 ms, and 5-6 ms with its session at nice -10. Like OpenSearch, they get
# the weight of about nine; the others keep one (docker-compose.yml: cpu_shares).
# shellcheck source=deploy/cpu-weight.sh
source "$ROOT/deploy/cpu-weight.sh"
nice_of() { case $1 in gateway|projector-*) setting "$(variable "$1")_NICE" -10 ;; *) setting "$(variable "$1")_NICE" 0 ;; esac; }
ready() { python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }
ready_url() { echo "http://127.0.0.1:${2:-$1}/health/ready"; }  # port [ops port]

start() {
  mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs"
  SECRETS_DIR=$SECRETS_DIR "$ROOT/deploy/secrets.sh"
  local instance module port ops weight
  while read -r instance module port ops; do
    local name=${instance%-[0-9]*} pidfile=$RUN_DIR/pids/$instance.pid prefix
    if pid_alive "$pidfile"; then echo "$instance already running"; continue; fi
    rm -f "$pidfile"
    prefix=$(variable "$name")
    # its ports under every name the process reads them by (<NAME>_HTTP_PORT before HTTP_PORT)
    # setsid may fork, so $! need not be the service: the shell writes its own pid, then becomes it
    # shellcheck disable=SC2046  # (paths without spaces, one word each)
    env HTTP_PORT="$port" "${prefix}_HTTP_PORT=$port" ${ops:+GATEWAY_OPS_PORT=$ops} PID_FILE="$pidfile" \
      $(secrets_of "$name") setsid bash -c 'echo $$ >"$PID_FILE"; exec "$@"' "$instance" \
      "$PYTHON" -m "$module" >>"$RUN_DIR/logs/$instance.log" 2>&1 </dev/null &
    for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.05; done
    weight=$(set_cpu_weight "$(cat "$pidfile")" "$(nice_of "$name")")
    [ -z "$weight" ] || echo "$instance: $weight"
  done < <(instances)
  local deadline=$((SECONDS + READY_TIMEOUT))
  while read -r instance module port ops; do
    local url; url=$(ready_url "$port" "$ops")
    until ready "$url"; do
      if ! pid_alive "$RUN_DIR/pids/$instance.pid"; then
        echo "$instance exited; last log lines:" >&2; tail -n 20 "$RUN_DIR/logs/$instance.log" >&2; exit 1
      fi
      [ $SECONDS -lt $deadline ] || { echo "$instance not ready after ${READY_TIMEOUT}s ($url); see $RUN_DIR/logs/$instance.log" >&2; exit 1; }
      sleep 0.3
    done
    echo "ready  $instance  $url"
  done < <(instances)
}

stop() { # every process started here, replicas no longer configured included
  local pidfile
  for pidfile in "$RUN_DIR"/pids/*.pid; do
    if pid_alive "$pidfile"; then kill -TERM "$(cat "$pidfile")"; fi
  done
  for pidfile in "$RUN_DIR"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    local instance; instance=$(basename "$pidfile" .pid)
    for _ in $(seq 150); do pid_alive "$pidfile" || break; sleep 0.1; done
    if pid_alive "$pidfile"; then kill -KILL "$(cat "$pidfile")"; echo "$instance killed after 15s"; else echo "$instance stopped"; fi
    rm -f "$pidfile"
  done
}

status() {
  local rc=0 instance module port ops
  while read -r instance module port ops; do
    if ready "$(ready_url "$port" "$ops")"; then echo "$instance: ready"
    elif pid_alive "$RUN_DIR/pids/$instance.pid"; then echo "$instance: running, not ready"; rc=1
    else echo "$instance: down"; rc=1; fi
  done < <(instances)
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
