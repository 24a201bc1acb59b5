"""Tokens this gateway has verified, kept until they expire: a caller's later requests with the same
token skip the signature check. Bounded: past `size` tokens the oldest is forgotten."""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class VerifiedTokens(Generic[T]):
    def __init__(self, size: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self._size, self._clock = size, clock
        self._verified: dict[str, tuple[T, float]] = {}  # token -> (what it says, when it expires)

    def get(self, token: str) -> T | None:
        """What the token said when it was verified, None if it was not or has expired since."""
        found = self._verified.get(token)
        if found is None:
            return None
        if self._clock() >= found[1]:
            del self._verified[token]
            return None
        return found[0]

    def put(self, token: str, verified: T, expires: float) -> None:
        if len(self._verified) >= self._size:
            del self._verified[next(iter(self._verified))]  # dicts keep insertion order: the oldest
        self._verified[token] = (verified, expires)
