"""Redis as deploy/infra.sh runs it (its users, `appendfsync always`) keeps what a Lua script wrote across
a SIGKILL and a start: the append-only file holds each script's writes as one MULTI/EXEC, which Redis
replays as the `default` user, and a `default` without rights used to refuse them silently."""

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[2]
TWO_WRITES = "redis.call('hset', KEYS[1], 'orders', ARGV[1]); redis.call('set', KEYS[2], ARGV[1]); return 1"


@dataclass
class Checkout:
    root: Path
    port: int

    def infra(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.root / "deploy" / "infra.sh", command, "redis"],
            env={**os.environ, "RUN_DIR": str(self.root / ".run"), "REDIS_PORT": str(self.port)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def client(self, user: str) -> Redis:
        password = (self.root / ".run" / "secrets" / f"redis-{user}").read_text().strip()
        return Redis(port=self.port, username=user, password=password, decode_responses=True)


@pytest.fixture
def checkout(tmp_path) -> Iterator[Checkout]:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    checkout = Checkout(tmp_path, free_ports(1)[0])
    yield checkout
    checkout.infra("stop")


async def test_a_scripts_writes_survive_a_sigkill_and_a_start(checkout: Checkout):
    started = checkout.infra("start")
    assert started.returncode == 0, started.stderr
    writer = checkout.client("projector-analytics")  # as the projector writes: a loaded script, by its sha
    sha = await writer.script_load(TWO_WRITES)
    assert await writer.evalsha(sha, 2, "analytics:t:revenue", "analytics:t:checkpoint", "42") == 1
    await writer.aclose()

    os.kill(int((checkout.root / ".run" / "redis" / "redis.pid").read_text()), signal.SIGKILL)
    started = checkout.infra("start")
    assert started.returncode == 0, started.stderr

    ops = checkout.client("ops")
    try:
        assert await ops.hgetall("analytics:t:revenue") == {"orders": "42"}
        assert await ops.get("analytics:t:checkpoint") == "42"
    finally:
        await ops.aclose()
