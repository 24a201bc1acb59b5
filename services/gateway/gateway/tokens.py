"""Bearer JWTs. HS256 with GATEWAY_JWT_SECRET (at least 32 bytes; `./justw up` generates one), or
RS256/ES256 with the keys published at GATEWAY_JWT_JWKS_URL (PyJWT's PyJWKClient: the key set is cached
and fetched again when a token names a key id it has not seen, at most every GATEWAY_JWT_JWKS_REFETCH seconds, so a
rotated key is picked up and made-up key ids cannot make it fetch on every request). `exp` is required;
`iss` and `aud` are checked when set; clock skew is at most JWT_LEEWAY seconds (0 to 300)."""

import time

import jwt

from shop.errors import Unauthorized, Unavailable

MIN_SECRET_BYTES = 32
JWKS_ALGORITHMS = ["RS256", "ES256"]


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
            self._jwks: jwt.PyJWKClient | None = jwt.PyJWKClient(jwks_url, lifespan=300, timeout=5)
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
        self._fetched, self._refetch = 0.0, jwks_refetch

    def claims(self, token: str) -> dict:
        """The token's claims once its signature, `exp` (and `iss`, `aud` when set) hold; else Unauthorized."""
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
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable("the token's keys cannot be fetched now") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc

    def _signing_key(self, token: str) -> object:
        kid = jwt.get_unverified_header(token).get("kid")
        for refresh in (False, True):
            if refresh and time.monotonic() - self._fetched < self._refetch:
                break
            if refresh or not self._fetched:
                self._fetched = time.monotonic()
            for key in self._jwks.get_signing_keys(refresh=refresh):
                if key.key_id == kid:
                    return key.key
        raise jwt.PyJWKClientError(f"no key with id {kid!r} in the key set")
