"""deploy/infra.sh from a checkout whose parent folder is 0700 (root's home, `mktemp -d`): PostgreSQL,
which runs as the postgres user, still starts; a failed start says why and leaves nothing running."""

import hashlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as the postgres user only for root")


@pytest.fixture
def private_checkout(tmp_path) -> Iterator[Path]:
    parent = tmp_path / "home"
    parent.mkdir(mode=0o700)
    checkout = parent / "shop"
    shutil.copytree(ROOT / "deploy", checkout / "deploy")
    yield checkout
    subprocess.run([checkout / "deploy" / "infra.sh", "stop"], capture_output=True, timeout=120)
    run_dir = hashlib.sha256(str(checkout / ".run").encode()).hexdigest()[:12]
    shutil.rmtree(Path(pwd.getpwnam("postgres").pw_dir) / f"shop-{run_dir}", ignore_errors=True)


def infra(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    ports = dict(zip(("NATS_PORT", "NATS_MONITOR_PORT", "PG_PORT"), map(str, free_ports(3)), strict=True))
    return subprocess.run(
        [checkout / "deploy" / "infra.sh", *args],
        env={**os.environ, **ports, **env, "RUN_DIR": str(checkout / ".run")},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_postgres_starts_from_a_checkout_in_a_0700_folder(private_checkout):
    started = infra(private_checkout, "start", "postgres")

    assert started.returncode == 0, started.stderr
    assert "postgres up" in started.stderr
    assert "postgres: up" in infra(private_checkout, "status").stdout


def test_a_failed_start_prints_the_cause_and_stops_what_it_started(private_checkout):
    failed = infra(private_checkout, "start", "nats", "postgres", PG_FSYNC="not-a-boolean")

    assert failed.returncode != 0
    assert 'parameter "fsync" requires a Boolean value' in failed.stderr, failed.stderr
    assert "nats up" in failed.stderr and "stopped what this start had launched" in failed.stderr
    status = infra(private_checkout, "status").stdout
    assert "nats: down" in status and "postgres: down" in status
