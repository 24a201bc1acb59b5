"""The gateway's JWT checks (gateway.tokens): HS256 with a secret of at least 32 bytes, RS256/ES256 from a
JWKS document this test serves on loopback (and rotates), `exp` required, `iss`/`aud`, bounded clock skew."""

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

from gateway.tokens import TokenVerifier
from shop.errors import Unauthorized

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
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keys.fetches += 1
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


def signed(private, kid: str, **more) -> str:
    algorithm = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims(**more), private, algorithm, headers={"kid": kid})


def test_rs256_and_es256_keys_come_from_the_jwks_url_and_rotate(keys):
    old, new = rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP256R1())
    keys.publish(("old", old))
    verifier = TokenVerifier("", jwks_url=keys.url, jwks_refetch=0.2)
    assert verifier.claims(signed(old, "old"))["sub"] == "u1"

    keys.publish(("new", new))  # rotated: the old key is withdrawn
    time.sleep(0.3)
    assert verifier.claims(signed(new, "new"))["sub"] == "u1"  # an unknown key id fetches the set again
    with pytest.raises(Unauthorized):
        verifier.claims(signed(old, "old"))
    with pytest.raises(Unauthorized):  # a key the set never had, under a known id
        verifier.claims(signed(ec.generate_private_key(ec.SECP256R1()), "new"))


def test_unknown_key_ids_do_not_fetch_the_key_set_on_every_request(keys):
    keys.publish(("k1", ec.generate_private_key(ec.SECP256R1())))
    verifier = TokenVerifier("", jwks_url=keys.url, jwks_refetch=30)
    stranger = ec.generate_private_key(ec.SECP256R1())
    for n in range(20):
        with pytest.raises(Unauthorized):
            verifier.claims(signed(stranger, f"made-up-{n}"))
    assert keys.fetches <= 2


def hs256(key: bytes, kid: str) -> str:
    """Signed by hand: PyJWT refuses to sign with a public key as HMAC secret, an attacker does not."""
    header = base64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = base64url(json.dumps(claims()).encode())
    mac = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64url(mac)}"


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_with_a_jwks_url_an_hs256_token_is_refused_whatever_its_secret(keys):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys.publish(("k", private))
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    verifier = TokenVerifier("", jwks_url=keys.url)
    for secret in (SECRET.encode(), public_pem):  # a shared secret, or the public key as one (algorithm confusion)
        with pytest.raises(Unauthorized):
            verifier.claims(hs256(secret, "k"))
