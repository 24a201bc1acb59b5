"""The gateway's JWT checks (gateway.tokens): HS256 with a secret of at least 32 bytes, RS256/ES256 from a
JWKS document this test serves on loopback (and rotates), `exp` required, `iss`/`aud`, bounded clock skew."""

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.tokens import TokenVerifier
from shop.errors import Unauthorized, Unavailable
from tests.conftest import gateway_settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def claims(expires_in: float = 60, **more) -> dict:
    return {"sub": "u1", "exp": int(time.time() + expires_in), **more}


def test_a_secret_shorter_than_32_bytes_or_a_wide_leeway_stops_the_gateway():
    with pytest.raises(SystemExit, match="at least 32 bytes"):
        TokenVerifier("dev-secret")
    with pytest.raises(SystemExit, match="LEEWAY"):
        TokenVerifier(SECRET, leeway=3600)


@pytest.mark.parametrize(
    ("expires_in", "accepted"),
    [
        (60, True),
        (None, False),  # no exp
        (-20, True),  # within the 30 s of skew
        (-40, False),
    ],
)
def test_hs256_needs_exp_within_the_leeway(expires_in, accepted):
    token = jwt.encode(claims(expires_in) if expires_in is not None else {"sub": "u1"}, SECRET, "HS256")
    if accepted:
        assert TokenVerifier(SECRET).claims(token)["sub"] == "u1"
    else:
        with pytest.raises(Unauthorized):
            TokenVerifier(SECRET).claims(token)


def test_issuer_and_audience_are_checked_when_set():
    verifier = TokenVerifier(SECRET, issuer="https://id.example", audience="shop")
    assert verifier.claims(jwt.encode(claims(iss="https://id.example", aud="shop"), SECRET, "HS256"))
    for wrong in (claims(iss="https://evil.example", aud="shop"), claims(iss="https://id.example"), claims()):
        with pytest.raises(Unauthorized):
            verifier.claims(jwt.encode(wrong, SECRET, "HS256"))


class Keys:
    """A JWKS document served on loopback; `publish` replaces the keys it lists (a rotation)."""

    def __init__(self) -> None:
        self.document = {"keys": []}
        self.fetches = 0
        self.delay = 0.0  # seconds before each answer
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keys.fetches += 1
                time.sleep(keys.delay)
                body = json.dumps(keys.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, *keys: tuple[str, object]) -> None:
        jwks = []
        for kid, private in keys:
            algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
            jwk = json.loads(algorithm.to_jwk(private.public_key()))
            jwks.append({**jwk, "kid": kid, "use": "sig"})
        self.document = {"keys": jwks}


@pytest.fixture
def keys() -> Iterator[Keys]:
    served = Keys()
    yield served
    served.server.shutdown()


async def verify(verifier: TokenVerifier, token: str) -> dict:
    """As the gateway does: its middleware fetches the key set the token needs, its guard verifies."""
    await verifier.prepare(token)
    return verifier.claims(token)


def signed(private, kid: str, **more) -> str:
    algorithm = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims(**more), private, algorithm, headers={"kid": kid})


async def test_rs256_and_es256_keys_come_from_the_jwks_url_and_rotate(keys):
    old, new = rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP256R1())
    keys.publish(("old", old))
    verifier = TokenVerifier("", jwks_url=keys.url, jwks_refetch=0.2)
    assert (await verify(verifier, signed(old, "old")))["sub"] == "u1"

    keys.publish(("new", new))  # rotated: the old key is withdrawn
    await asyncio.sleep(0.3)
    assert (await verify(verifier, signed(new, "new")))["sub"] == "u1"  # an unknown key id fetches the set again
    with pytest.raises(Unauthorized):
        await verify(verifier, signed(old, "old"))
    with pytest.raises(Unauthorized):  # a key the set never had, under a known id
        await verify(verifier, signed(ec.generate_private_key(ec.SECP256R1()), "new"))


async def test_unknown_key_ids_do_not_fetch_the_key_set_on_every_request(keys):
    keys.publish(("k1", ec.generate_private_key(ec.SECP256R1())))
    verifier = TokenVerifier("", jwks_url=keys.url, jwks_refetch=30)
    stranger = ec.generate_private_key(ec.SECP256R1())
    for n in range(20):
        with pytest.raises(Unauthorized):
            await verify(verifier, signed(stranger, f"made-up-{n}"))
    assert keys.fetches <= 2


async def test_a_slow_key_server_holds_only_the_requests_that_need_its_keys(keys):
    """The fetch runs in a worker thread: the event loop (every other request) goes on meanwhile, and the
    requests that need the set share one fetch."""
    private = ec.generate_private_key(ec.SECP256R1())
    keys.publish(("k", private))
    keys.delay = 1.0
    verifier = TokenVerifier("", jwks_url=keys.url)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(tick())
    try:
        found = await asyncio.gather(*(verify(verifier, signed(private, "k")) for _ in range(5)))
    finally:
        ticking.cancel()
    assert [c["sub"] for c in found] == ["u1"] * 5
    assert keys.fetches == 1
    assert ticks >= 30  # a blocked loop would not have ticked during the second the fetch took


async def test_the_gateway_fetches_the_key_set_a_request_needs_before_verifying_it(keys, nats):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys.publish(("k", private))
    app = create_app(gateway_settings(nats, jwt_secret="", jwt_jwks_url=keys.url, query_timeout=1))
    async with AsyncTestClient(app=app) as client:
        known = await client.get("/v1/orders/o1", headers={"Authorization": "Bearer " + signed(private, "k")})
        stranger = ec.generate_private_key(ec.SECP256R1())
        unknown = await client.get("/v1/orders/o1", headers={"Authorization": "Bearer " + signed(stranger, "x")})
    # past the guard, whatever the query-service says (if one runs on this NATS)
    assert known.status_code != 401 and "keys cannot be fetched" not in known.text, known.text
    assert unknown.status_code == 401, unknown.text
    assert keys.fetches == 1  # for the first request; the unknown id comes within GATEWAY_JWT_JWKS_REFETCH


async def test_an_unreachable_key_server_answers_unavailable_not_unauthorized(keys):
    private = ec.generate_private_key(ec.SECP256R1())
    keys.publish(("k", private))
    verifier = TokenVerifier("", jwks_url=keys.url)
    keys.server.shutdown()
    keys.server.server_close()
    with pytest.raises(Unavailable):
        await verify(verifier, signed(private, "k"))


def hs256(key: bytes, kid: str) -> str:
    """Signed by hand: PyJWT refuses to sign with a public key as HMAC secret, an attacker does not."""
    header = base64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = base64url(json.dumps(claims()).encode())
    mac = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64url(mac)}"


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_with_a_jwks_url_an_hs256_token_is_refused_whatever_its_secret(keys):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys.publish(("k", private))
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    verifier = TokenVerifier("", jwks_url=keys.url)
    for secret in (SECRET.encode(), public_pem):  # a shared secret, or the public key as one (algorithm confusion)
        with pytest.raises(Unauthorized):
            await verify(verifier, hs256(secret, "k"))
