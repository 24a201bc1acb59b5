"""The OpenAPI contract holds: schemathesis, with every check, its stateful phase and a bounded
number of examples, finds nothing wrong with the gateway of an isolated system, for an admin and
for a user."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("roles", [("admin",), ()], ids=["admin", "user"])
def test_schemathesis_finds_no_failure(system, tmp_path, roles):
    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    run = subprocess.run(
        [
            schemathesis,
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{system.gateway}/schema/openapi.json",
            "--header",
            f"Authorization: {system.token('contract-' + '-'.join(roles or ('user',)), *roles)['Authorization']}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "10",
            "--seed",
            "20261125",
            "--request-timeout",
            "5",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # where schemathesis keeps its cache
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
