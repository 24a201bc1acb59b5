"""The machine and the running system as seen from /proc: which process is which, CPU seconds,
memory, versions. Only reads; the processes are those `./justw up` started from this checkout."""

import os
import platform
import resource
import subprocess
from pathlib import Path

from shop.ops import PROCESSES

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("RUN_DIR", ROOT / ".run"))
TICK = os.sysconf("SC_CLK_TCK")


def _first_line(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_ids() -> dict[str, int]:
    """name -> pid of each of the six processes and each infrastructure daemon."""
    files = {name: RUN_DIR / "pids" / f"{name}.pid" for name in PROCESSES}
    files |= {
        "nats": RUN_DIR / "nats" / "nats.pid",
        "postgres": RUN_DIR / "postgres" / "postmaster.pid",
        "redis": RUN_DIR / "redis" / "redis.pid",
        "opensearch": RUN_DIR / "opensearch" / "opensearch.pid",
    }
    return {name: pid for name, path in files.items() if (pid := _first_line(path)) is not None}


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its children it has waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    return children


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process with its children (PostgreSQL's backends), plus this
    benchmark itself and the load tools it has run (wrk)."""
    children = _children()
    used = {}
    for name, pid in pids.items():
        total = 0.0
        for member in [pid, *children.get(pid, [])]:
            if (stat := _stat(member)) is not None:
                total += stat[1]
        used[name] = total
    own, tools = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    used["bench (python)"] = own.ru_utime + own.ru_stime
    used["load tool (wrk)"] = tools.ru_utime + tools.ru_stime
    return used


def _pss_mb(pid: int) -> float:
    """Proportional set size: resident memory with shared pages split among their users."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_mb(pids: dict[str, int]) -> dict[str, float]:
    children = _children()
    return {name: sum(_pss_mb(p) for p in [pid, *children.get(pid, [])]) for name, pid in pids.items()}


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _run(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, object]:
    meminfo = Path("/proc/meminfo").read_text().split()
    status = _run("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2, 1),
        "cpu": next(
            (
                x.split(":", 1)[1].strip()
                for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")
            ),
            platform.processor(),
        ),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": _run("git", "rev-parse", "HEAD") + (" (with uncommitted changes)" if status else ""),
        "load_average_at_start": load_average(),
        "wrk": _run("wrk", "--version").splitlines()[0] if _run("wrk", "--version") else "",
        "nats_server": _run("nats-server", "--version"),
    }
