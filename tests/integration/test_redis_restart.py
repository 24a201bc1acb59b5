"""Redis as deploy/infra.sh runs it (its users, `appendfsync always`) keeps what a Lua script wrote across
a SIGKILL and a start: the append-only file holds each script's writes as one MULTI/EXEC, which Redis
replays as the `default` user, and a `default` without rights used to refuse them silently."""

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import INFRA_SH, free_port, sigkill

TWO_WRITES = "redis.call('hset', KEYS[1], 'orders', ARGV[1]); redis.call('set', KEYS[2], ARGV[1]); return 1"


@dataclass
class RedisRun:
    """A Redis of its own, started by deploy/infra.sh into its own run folder (its users and passwords)."""

    run_dir: Path
    port: int

    def infra(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [INFRA_SH, command, "redis"],
            env={**os.environ, "RUN_DIR": str(self.run_dir), "REDIS_PORT": str(self.port)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def client(self, user: str) -> Redis:
        password = (self.run_dir / "secrets" / f"redis-{user}").read_text().strip()
        return Redis(port=self.port, username=user, password=password, decode_responses=True)


@pytest.fixture
def run(tmp_path) -> Iterator[RedisRun]:
    run = RedisRun(tmp_path, free_port())
    yield run
    run.infra("stop")


async def test_a_scripts_writes_survive_a_sigkill_and_a_start(run: RedisRun):
    started = run.infra("start")
    assert started.returncode == 0, started.stderr
    writer = run.client("projector-analytics")  # as the projector writes: a loaded script, by its sha
    sha = await writer.script_load(TWO_WRITES)
    assert await writer.evalsha(sha, 2, "analytics:t:revenue", "analytics:t:checkpoint", "42") == 1
    await writer.aclose()

    sigkill(int((run.run_dir / "redis" / "redis.pid").read_text()))
    started = run.infra("start")
    assert started.returncode == 0, started.stderr

    ops = run.client("ops")
    try:
        assert await ops.hgetall("analytics:t:revenue") == {"orders": "42"}
        assert await ops.get("analytics:t:checkpoint") == "42"
    finally:
        await ops.aclose()
