"""docker-compose.yml checked without a Docker daemon: the compose-spec schema, then the wiring
DESIGN.md §2 and §8 ask for (one image, healthchecks, only the gateway published, NATS users)."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
# compose-spec.json is schema/compose-spec.json of github.com/compose-spec/compose-spec (Apache-2.0), verbatim.
COMPOSE_SPEC = Path(__file__).with_name("compose-spec.json")

NATS = {"nats-1", "nats-2", "nats-3"}  # one JetStream cluster
INFRA = NATS | {"postgres", "redis", "opensearch"}
# app service -> (python module, HTTP port, infrastructure it needs)
APPS = {
    "gateway": ("gateway", 8000, NATS),
    "command-service": ("command_service", 8001, NATS | {"postgres"}),
    "query-service": ("query_service", 8002, NATS | {"redis", "opensearch"}),
    "projector-order-list": ("projector_order_list", 8003, NATS | {"opensearch"}),
    "projector-analytics": ("projector_analytics", 8004, NATS | {"redis"}),
    "projector-catalog": ("projector_catalog", 8005, NATS | {"opensearch"}),
}
# how each app reaches a piece of infrastructure, by its service name
INFRA_URLS = {
    **{node: ("NATS_URL", f"nats://{node}:4222") for node in NATS},
    "postgres": ("DATABASE_URL", "@postgres:5432/"),  # (the password in DATABASE_PASSWORD)
    "redis": ("REDIS_URL", "redis://redis:6379"),
    "opensearch": ("OPENSEARCH_URL", "http://opensearch:9200"),
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def nats_config_text(services) -> str:
    """The users of the NATS server compose runs (the config it runs includes them from beside it)."""
    mounts = [v.split(":") for v in services["nats-1"]["volumes"] if isinstance(v, str)]
    ((source, target, *_),) = [m for m in mounts if m[0] == "./deploy/nats"]
    assert f"{target}/nats-server.conf" in services["nats-1"]["command"], "the mounted config is not the one nats runs"
    return (ROOT / source / "auth.conf").read_text()


def test_compose_file_matches_the_compose_spec(compose):
    schema = json.loads(COMPOSE_SPEC.read_text())
    Draft7Validator.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft7Validator(schema).iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


def test_all_infrastructure_and_app_services_exist(services):
    assert INFRA | APPS.keys() <= services.keys()


@pytest.mark.parametrize("name", APPS)
def test_app_service_runs_its_module_from_the_shared_image(services, name):
    service, (module, port, _) = services[name], APPS[name]
    assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert service["command"] == ["python", "-m", module]
    assert service["environment"]["HTTP_PORT"] == str(port)
    assert service["environment"]["HTTP_HOST"] == "0.0.0.0"


def test_only_the_gateway_publishes_a_port(services):
    assert {name for name, s in services.items() if s.get("ports") or s.get("network_mode") == "host"} == {"gateway"}
    assert services["gateway"]["ports"] == ["8000-8001:8000"]  # one host port for each of its two replicas


@pytest.mark.parametrize("name", sorted(INFRA | APPS.keys()))
def test_service_has_a_healthcheck(services, name):
    check = services[name].get("healthcheck", {})
    assert check.get("test") and not check.get("disable")
    if name in APPS:
        assert "/health/ready" in " ".join(check["test"])


@pytest.mark.parametrize("name", APPS)
def test_app_service_waits_for_healthy_infrastructure_it_reaches_by_name(services, name):
    service, needs = services[name], APPS[name][2]
    assert {dep: c["condition"] for dep, c in service["depends_on"].items() if dep in INFRA} == dict.fromkeys(
        needs, "service_healthy"
    )
    for infra in needs:
        variable, address = INFRA_URLS[infra]
        assert address in service["environment"][variable]


def test_nats_config_defines_a_user_per_app_service_with_password_from_env(services, nats_config_text):
    """Each app logs in as the NATS user of its own name (shop.messaging.connect) with that user's password."""
    users = dict(re.findall(r"user:\s*([\w-]+)\s+password:\s*\$(\w+)", nats_config_text))
    assert APPS.keys() | {"ops"} <= users.keys()
    for node in NATS:
        assert set(users.values()) <= services[node]["environment"].keys()
        for app in APPS:
            assert services[app]["environment"]["NATS_PASSWORD"] == services[node]["environment"][users[app]]
        assert "-js" in services[node]["command"]


def test_nats_runs_as_a_cluster_of_three_with_replicated_streams_and_two_of_each_app(services):
    """Each node has its name, its own store and the routes to all three (authenticated as `route`);
    every app is given all three nodes, asks for R3 streams and runs twice (a projector: one stands by)."""
    config = (ROOT / "deploy/nats/nats-server.conf").read_text()
    assert "server_name: $NATS_SERVER_NAME" in config
    assert "routes: [$NATS_ROUTE_1, $NATS_ROUTE_2, $NATS_ROUTE_3]" in config and "user: route" in config
    assert {services[node]["environment"]["NATS_SERVER_NAME"] for node in NATS} == NATS
    stores = {v for node in NATS for v in services[node]["volumes"] if v.endswith(":/data")}
    assert len(stores) == 3
    for node in NATS:
        routes = [services[node]["environment"][f"NATS_ROUTE_{i}"] for i in (1, 2, 3)]
        assert [r.rpartition("@")[2] for r in routes] == ["nats-1:6222", "nats-2:6222", "nats-3:6222"]
        assert all(r.startswith("nats-route://route:${ROUTE_NATS_PASSWORD:?") for r in routes)
    for name in APPS:
        environment = services[name]["environment"]
        assert environment["NATS_URL"].split(",") == [f"nats://{node}:4222" for node in sorted(NATS)]
        assert environment["NATS_STREAM_REPLICAS"] == "3"
        assert services[name].get("deploy", {}).get("replicas", 1) == 2


def test_no_secret_has_a_default_and_each_one_is_required():
    """`${VAR:-default}` only for settings that are no secret; every other variable fails loudly when missing."""
    text = (ROOT / "docker-compose.yml").read_text()
    variables = re.findall(r"\$\{(\w+)(:?[-?])?([^}]*)\}", text)
    defaulted = {name for name, how, _ in variables if how in (":-", "-")}
    assert defaulted == {"ENVIRONMENT", "LOG_LEVEL"}
    required = {name for name, how, _ in variables if how == ":?"}
    assert {"ACTOR_KEY", "OPS_TOKEN", "GATEWAY_JWT_SECRET", "POSTGRES_PASSWORD", "OPS_NATS_PASSWORD"} <= required
    assert not [name for name, how, _ in variables if not how], "a variable that is neither defaulted nor required"
    generated = subprocess.run(
        [ROOT / "deploy/secrets.sh", "compose-env"], env={"RUN_DIR": str(ROOT / ".run")}, capture_output=True, text=True
    )
    assert {line.split("=")[0] for line in generated.stdout.splitlines()} >= required, generated.stderr


def test_nats_monitoring_answers_on_loopback_only(nats_config_text):
    main = (ROOT / "deploy/nats/nats-server.conf").read_text()
    assert re.search(r"^http: 127\.0\.0\.1:8222$", main, re.M) and 'include "auth.conf"' in main


def test_dockerfile_installs_the_project_as_a_non_root_user():
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^RUN pip install --no-cache-dir \.$", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}


def test_redis_has_the_users_of_the_local_run_and_each_client_logs_in_as_itself(services):
    """The rules of deploy/redis/users.acl (which deploy/infra.sh writes for the local run too), each
    user's password from a required variable; no anonymous client, so the health check logs in."""
    redis = services["redis"]
    assert "./deploy/redis/users.acl:/etc/redis/users.acl:ro" in redis["volumes"]
    script = redis["command"][-1]
    assert "/etc/redis/users.acl" in script and "--aclfile /data/users.acl" in script
    assert "--user ops" in redis["healthcheck"]["test"][-1]
    for app in ("query-service", "projector-analytics"):
        variable = app.upper().replace("-", "_") + "_REDIS_PASSWORD"
        assert services[app]["environment"]["REDIS_PASSWORD"] == redis["environment"][variable]
    assert "user default off" in (ROOT / "deploy/redis/users.acl").read_text()
