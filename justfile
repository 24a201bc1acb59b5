# Recipes for running, testing and operating the shop. Call through ./justw (it prepares .venv).
set shell := ["bash", "-euo", "pipefail", "-c"]
export PATH := justfile_directory() + "/.venv/bin:" + justfile_directory() + "/.run/bin:" + env_var("PATH")

# list the recipes
default:
    @just --list

# install and start the infrastructure and the six processes; returns once all are ready
up:
    deploy/infra.sh start
    deploy/services.sh start
    @echo "API:     http://127.0.0.1:${GATEWAY_HTTP_PORT:-8000}/v1  (OpenAPI: /schema)"
    @echo "Ops:     gateway health and metrics on 127.0.0.1:${GATEWAY_OPS_PORT:-8006}; ops token in .run/secrets/ops-token"
    @echo "JWT:     HS256 with secret '${GATEWAY_JWT_SECRET:-$(cat .run/secrets/jwt-secret)}' (generated; sub = user id, roles = [\"admin\"] for admin)"
    @echo "Logs:    .run/logs/<process>.log   Stop: ./justw down"

# stop the six processes, then the infrastructure
down:
    deploy/services.sh stop
    deploy/infra.sh stop

# state of the infrastructure and of the six processes
status:
    -deploy/infra.sh status
    deploy/services.sh status

# follow the logs of every process (or of one: just logs gateway)
logs service="*":
    tail -n 50 -F .run/logs/{{service}}.log

# run the test suite (starts the infrastructure if it is not running)
test *args:
    deploy/infra.sh start
    python -m pytest {{args}}

# rebuild one read model with no downtime: just rebuild catalog | order-list | analytics
rebuild projector:
    @python -m shop.projection.rebuild {{projector}}

# list, re-drive or drop dead letters: just dlq list | redrive [--projector P] [--seq N...] | drop --seq N...
dlq *args:
    @python -m shop.projection.dlq {{args}}

# every speed figure beside its raw ceiling, with charts in bench/results/ (starts the system if needed); --quick: about a minute
bench *args: up
    command -v wrk >/dev/null || deploy/apt-install.sh wrk
    python -W ignore -m bench {{args}}

# lint and format check
lint:
    ruff check libs services tests bench
    ruff format --check libs services tests bench
