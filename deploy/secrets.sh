#!/usr/bin/env bash
# Generates, once, every secret of a local run into $SECRETS_DIR (default $RUN_DIR/secrets, folder 0700,
# files 0600): 41 random characters each (a letter, then hex: URL-safe and a valid NATS config token).
# Nothing here is committed (.run/ is ignored) and nothing has a fixed default.
#   nats-<user>     NATS password of each user of deploy/nats/auth.conf (the six processes and ops), and
#                   of `route`, as which the nodes of a NATS cluster connect to each other
#   actor-key       HMAC key with which the gateway signs the caller of each command and query
#   ops-token       bearer token of the state-changing ops endpoints (POST/DELETE /rebuild, /dlq/redrive)
#   jwt-secret      the gateway's development HS256 secret
#   redis-<user>    Redis password of each ACL user deploy/infra.sh writes (projector-analytics, query-service, ops)
#   postgres-<user> PostgreSQL password of the command-service's role `shop` and of the admin role `shop_ops`
# Usage: deploy/secrets.sh             generate what is missing
#        deploy/secrets.sh nats-env    also print `export <USER>_NATS_PASSWORD=...` lines for nats-server
#        deploy/secrets.sh compose-env also print every variable docker-compose.yml requires (for .env)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
SECRETS_DIR=${SECRETS_DIR:-$RUN_DIR/secrets}
NATS_USERS="gateway command-service query-service projector-order-list projector-analytics projector-catalog ops route"
REDIS_USERS="projector-analytics query-service ops"
POSTGRES_USERS="command-service ops"

mkdir -p "$(dirname "$SECRETS_DIR")"  # (with the usual mode: PostgreSQL may need to enter the run folder)
umask 077
mkdir -p "$SECRETS_DIR"
chmod 700 "$SECRETS_DIR"
for name in $(printf 'nats-%s ' $NATS_USERS) $(printf 'redis-%s ' $REDIS_USERS) $(printf 'postgres-%s ' $POSTGRES_USERS) \
  actor-key ops-token jwt-secret; do
  file=$SECRETS_DIR/$name
  [ -s "$file" ] && continue
  printf 's%s' "$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')" >"$file.tmp"
  mv "$file.tmp" "$file"
done

variable() { echo "$1" | tr 'a-z-' 'A-Z_'; }
case "${1:-}" in
  nats-env)
    for user in $NATS_USERS; do printf 'export %s_NATS_PASSWORD=%s\n' "$(variable "$user")" "$(cat "$SECRETS_DIR/nats-$user")"; done ;;
  compose-env)
    for user in $NATS_USERS; do printf '%s_NATS_PASSWORD=%s\n' "$(variable "$user")" "$(cat "$SECRETS_DIR/nats-$user")"; done
    printf 'ACTOR_KEY=%s\nOPS_TOKEN=%s\nGATEWAY_JWT_SECRET=%s\n' "$(cat "$SECRETS_DIR/actor-key")" \
      "$(cat "$SECRETS_DIR/ops-token")" "$(cat "$SECRETS_DIR/jwt-secret")"
    printf 'POSTGRES_PASSWORD=%s\n' "$(cat "$SECRETS_DIR/postgres-command-service")"
    for user in $REDIS_USERS; do printf '%s_REDIS_PASSWORD=%s\n' "$(variable "$user")" "$(cat "$SECRETS_DIR/redis-$user")"; done ;;
esac
