"""Merged analytics changes do to the counters what the same changes do one by one."""

import random
from collections import defaultdict

from projector_analytics.changes import merge


def run(commands: list[list]) -> dict:
    """The counters after `commands`, on a model of the four Redis commands the projection uses."""
    hashes, zsets = defaultdict(dict), defaultdict(dict)
    for name, key, a, b in commands:
        if name == "HINCRBY":
            hashes[key][a] = hashes[key].get(a, 0) + b
        elif name == "HSET":
            hashes[key][a] = b
        elif name == "ZINCRBY":
            zsets[key][b] = zsets[key].get(b, 0) + a
        elif name == "ZADD":
            zsets[key][b] = a
    return {"hashes": dict(hashes), "zsets": dict(zsets)}


def random_commands(rng: random.Random, count: int) -> list[list]:
    keys, fields = ["day:1", "day:2", "names", "units"], ["a", "b", "c"]
    commands = []
    for _ in range(count):
        key, field = rng.choice(keys), rng.choice(fields)
        commands.append(
            rng.choice(
                [
                    ["HINCRBY", f"h:{key}", field, rng.randint(-5, 5)],
                    ["HSET", f"s:{key}", field, rng.choice(["x", "y", "z"])],
                    ["ZINCRBY", f"z:{key}", rng.randint(-5, 5), field],
                    ["ZADD", f"d:{key}", rng.randint(0, 9), field],
                ]
            )
        )
    return commands


def test_merged_changes_leave_the_counters_as_the_changes_one_by_one():
    rng = random.Random(7)
    for _ in range(200):
        commands = random_commands(rng, rng.randint(0, 60))
        assert run(merge(commands)) == run(commands)


def test_merging_leaves_one_command_per_key_and_field():
    commands = [["HINCRBY", "day", "revenue", 5]] * 10 + [["HSET", "names", "p", "old"], ["HSET", "names", "p", "new"]]
    assert merge(commands) == [["HINCRBY", "day", "revenue", 50], ["HSET", "names", "p", "new"]]
