"""The gateway's cache of verified tokens: an entry lasts until the token expires, and the cache is bounded."""

from gateway.verified_tokens import VerifiedTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_known_until_it_expires():
    clock = Clock()
    tokens = VerifiedTokens(clock=clock)
    tokens.put("t", "ann", expires=1010.0)

    assert tokens.get("t") == "ann"
    clock.now = 1009.9
    assert tokens.get("t") == "ann"
    clock.now = 1010.0
    assert tokens.get("t") is None
    assert tokens.get("other") is None


def test_past_its_size_the_oldest_token_is_forgotten():
    tokens = VerifiedTokens(size=2, clock=Clock())
    for name in ("a", "b", "c"):
        tokens.put(name, name, expires=2000.0)

    assert [tokens.get(name) for name in ("a", "b", "c")] == [None, "b", "c"]
