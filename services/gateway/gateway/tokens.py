"""Bearer JWTs. HS256 with GATEWAY_JWT_SECRET (at least 32 bytes; `./justw up` generates one), or
RS256/ES256 with the keys published at GATEWAY_JWT_JWKS_URL. The key set is fetched in a worker thread,
never on the event loop (a slow key server holds only the requests that need it): before a request is
verified, when the set is older than its lifespan (5 minutes; the old set serves meanwhile), and when a
token names a key id the set does not have, at most every GATEWAY_JWT_JWKS_REFETCH seconds, so a rotated
key is picked up and made-up key ids cannot make it fetch on every request. `exp` is required; `iss` and
`aud` are checked when set; clock skew is at most JWT_LEEWAY seconds (0 to 300)."""

import asyncio
import time

import jwt
import structlog

from shop.errors import Unauthorized, Unavailable

MIN_SECRET_BYTES = 32
JWKS_ALGORITHMS = ["RS256", "ES256"]
JWKS_LIFESPAN = 300.0

log = structlog.get_logger()


class TokenVerifier:
    def __init__(
        self,
        secret: str,
        jwks_url: str = "",
        issuer: str = "",
        audience: str = "",
        leeway: float = 30.0,
        jwks_refetch: float = 30.0,
    ) -> None:
        if jwks_url:
            self._jwks: jwt.PyJWKClient | None = jwt.PyJWKClient(jwks_url, cache_jwk_set=False, timeout=5)
            self._algorithms = JWKS_ALGORITHMS
        elif len(secret.encode()) >= MIN_SECRET_BYTES:
            self._jwks, self._algorithms = None, ["HS256"]
        else:
            raise SystemExit(
                f"set GATEWAY_JWT_SECRET (HS256, at least {MIN_SECRET_BYTES} bytes) "
                "or GATEWAY_JWT_JWKS_URL (RS256/ES256)"
            )
        if not 0 <= leeway <= 300:
            raise SystemExit("invalid setting: GATEWAY_JWT_LEEWAY must be 0 to 300 seconds")
        self._secret, self._issuer, self._audience, self._leeway = secret, issuer or None, audience or None, leeway
        self._refetch = jwks_refetch
        self._keys: dict[str | None, object] = {}  # key id -> key, as last fetched
        self._fetched = self._tried = -float("inf")  # monotonic times of the last fetch, and of the last attempt
        self._fetch_failed = False
        self._fetching: asyncio.Future | None = None

    async def prepare(self, token: str) -> None:
        """Fetch the key set if `token` needs it: waits for it when the set lacks the token's key id, starts
        it in the background when the set is only old (see the module's doc)."""
        if self._jwks is None:
            return
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return  # claims() refuses it
        fetching = self._fetching is not None and not self._fetching.done()
        due = fetching or time.monotonic() - self._tried >= self._refetch
        if kid not in self._keys and due:
            await asyncio.shield(self._fetch())
        elif due and time.monotonic() - self._fetched > JWKS_LIFESPAN:
            self._fetch()

    def _fetch(self) -> asyncio.Future:
        """The fetch under way, or a new one; the requests that ask meanwhile share it."""
        if self._fetching is None or self._fetching.done():
            self._tried = time.monotonic()
            self._fetching = asyncio.ensure_future(self._load())
        return self._fetching

    async def _load(self) -> None:
        try:
            found = await asyncio.to_thread(self._jwks.get_signing_keys)
        except (jwt.PyJWTError, ValueError) as exc:  # unreachable, or no usable key in it: the old set serves
            self._fetch_failed = True
            log.warning("jwks_fetch_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._keys, self._fetched, self._fetch_failed = {k.key_id: k.key for k in found}, time.monotonic(), False

    def claims(self, token: str) -> dict:
        """The token's claims once its signature, `exp` (and `iss`, `aud` when set) hold; else Unauthorized.
        With a key set, only the keys fetched so far count: it never fetches (prepare() does, called by the
        gateway's middleware)."""
        try:
            key = self._signing_key(token) if self._jwks else self._secret
            return jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                options={"require": ["sub", "exp"]},
                leeway=self._leeway,
                issuer=self._issuer,
                audience=self._audience,
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc

    def _signing_key(self, token: str) -> object:
        kid = jwt.get_unverified_header(token).get("kid")
        if kid in self._keys:
            return self._keys[kid]
        if self._fetch_failed:
            raise Unavailable("the token's keys cannot be fetched now")
        raise jwt.PyJWKClientError(f"no key with id {kid!r} in the key set")
