"""Where a process of the running shop spends its time: samples it with py-spy (not pausing it)
and prints the functions with the most samples, on their own (self) and with what they call
(inclusive). Run it while a load runs, e.g. during `./justw bench`:

    python -m bench.profile gateway command-service --seconds 20"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.system import process_ids

OURS = re.compile(r"\((shop|gateway|command_service|query_service|projector_[a-z_]+)/")
ENTRY = re.compile(r"^(<module> \(.*__main__\.py|main \(shop/ops\.py|serve \(shop/ops\.py)")  # in every sample


def top_entries(collapsed: str, count: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top self, top inclusive of the shop's own functions) from py-spy's raw (collapsed
    stack) output; the process's entry point, in every sample, is left out."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(samples)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    ours = [(frame, n) for frame, n in inclusive.most_common() if OURS.search(frame) and not ENTRY.match(frame)]
    return total, own.most_common(count), ours[:count]


def record(pid: int, seconds: float) -> str:
    py_spy = Path(sys.executable).parent / "py-spy"  # installed with the dev dependencies
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        options = ["--nonblocking", "--rate", "100", "--duration", str(int(seconds)), "--format", "raw"]
        subprocess.run(
            [py_spy, "record", *options, "--pid", str(pid), "--output", out.name], check=True, capture_output=True
        )
        return Path(out.name).read_text()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("processes", nargs="+", help="gateway, command-service, query-service, projector-...")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    pids = process_ids()
    if unknown := [p for p in args.processes if p not in pids]:
        sys.exit(f"not running: {', '.join(unknown)}")
    recorders = {}
    for name in args.processes:  # all at once, over the same seconds
        recorders[name] = subprocess.Popen(
            [sys.executable, "-c", f"from bench.profile import record; print(record({pids[name]}, {args.seconds}))"],
            stdout=subprocess.PIPE,
            text=True,
        )
    for name, recorder in recorders.items():
        total, own, inclusive = top_entries(recorder.communicate()[0], args.top)
        print(f"\n== {name}: {total} samples while busy ({args.seconds:.0f} s at 100 Hz)")
        for title, entries in (("self", own), ("inclusive, the shop's own functions", inclusive)):
            print(f"-- top {title}")
            for frame, n in entries:
                print(f"{n / total:6.1%}  {frame}")
