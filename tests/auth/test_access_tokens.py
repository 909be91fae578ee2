"""Access tokens: what is accepted, and the forgeries a reviewer tries (checklist 11 to 17)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from computebill.config import JwtAlgorithm, Settings
from tests.support.http import Api, api_for
from tests.support.settings import TEST_JWT_SECRET


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def forge(claims: dict[str, Any], *, key: str | bytes = TEST_JWT_SECRET, **header: Any) -> str:
    return jwt.encode(claims, key, algorithm=header.pop("alg", "HS256"), headers=header or None)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
async def victim(api: Api, email: str) -> dict[str, Any]:
    return await api.sign_up(email)


async def me_status(api: Api, token: str) -> int:
    return (await api.get("/api/v1/me", token)).status_code


async def test_a_genuine_token_is_accepted_and_carries_every_claim(
    api: Api, victim: dict[str, Any]
) -> None:
    claims = claims_of(victim["access_token"])
    assert set(claims) == {"sub", "sid", "typ", "iat", "exp", "iss", "aud", "jti"}
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 600
    assert await me_status(api, victim["access_token"]) == 200


async def test_a_token_whose_session_is_unknown_or_someone_elses_is_refused(
    api: Api, victim: dict[str, Any], email: str
) -> None:
    """Defence in depth: a token signed with our key still names a session of its own user."""
    attacker = await api.sign_up("attacker-" + email)
    assert await me_status(api, victim["access_token"]) == 200  # the owner is known by now
    victims = claims_of(victim["access_token"])
    attackers = claims_of(attacker["access_token"])
    for sid in (attackers["sid"], str(uuid.uuid4())):
        forged = forge(victims | {"sid": sid, "jti": uuid.uuid4().hex})
        assert await me_status(api, forged) == 401
    stolen_session = forge(attackers | {"sid": victims["sid"], "jti": uuid.uuid4().hex})
    assert await me_status(api, stolen_session) == 401
    assert await me_status(api, victim["access_token"]) == 200
    assert await me_status(api, attacker["access_token"]) == 200


async def test_alg_none_is_refused(api: Api, victim: dict[str, Any]) -> None:
    claims = claims_of(victim["access_token"])
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert await me_status(api, unsigned) == 401


async def test_tampered_claims_are_refused(api: Api, victim: dict[str, Any]) -> None:
    header, _, signature = victim["access_token"].split(".")
    claims = claims_of(victim["access_token"]) | {"sub": str(uuid.uuid4())}
    assert await me_status(api, f"{header}.{b64(claims)}.{signature}") == 401


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "urn:computebill-api"},
        {"aud": "computebill-api-evil"},
        {"aud": ["computebill-api", "other"]},
        {"iss": "computebill.evil"},
        {"iss": "urn:computebill"},
        {"typ": "refresh"},
        {"exp": int(time.time()) - 120},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
    ],
    ids=lambda change: next(iter(change)) + "=" + str(next(iter(change.values())))[:20],
)
async def test_wrong_claims_are_refused(
    api: Api, victim: dict[str, Any], change: dict[str, Any]
) -> None:
    claims = claims_of(victim["access_token"]) | change
    assert await me_status(api, forge(claims)) == 401


@pytest.mark.parametrize("missing", ["exp", "sid", "jti", "iat", "aud", "iss", "typ"])
async def test_a_token_missing_a_claim_is_refused(
    api: Api, victim: dict[str, Any], missing: str
) -> None:
    claims = claims_of(victim["access_token"])
    del claims[missing]
    assert await me_status(api, forge(claims)) == 401


async def test_a_token_signed_with_another_secret_is_refused(
    api: Api, victim: dict[str, Any]
) -> None:
    forged = forge(claims_of(victim["access_token"]), key="another-secret-of-at-least-32-bytes!")
    assert await me_status(api, forged) == 401


async def test_a_refresh_token_is_not_a_bearer_token(api: Api, victim: dict[str, Any]) -> None:
    assert await me_status(api, victim["refresh_token"]) == 401
    answer = await api.http.get("/api/v1/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012 - shared on purpose, read by the test

    def do_GET(self) -> None:
        _Recorder.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"keys": []}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def key_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


async def test_key_location_headers_are_refused_and_never_fetched(
    api: Api, victim: dict[str, Any], key_server: str
) -> None:
    claims = claims_of(victim["access_token"])
    attacker = Ed25519PrivateKey.generate()
    public_jwk = jwt.get_algorithm_by_name("EdDSA").to_jwk(attacker.public_key(), as_dict=True)
    forged = [
        forge(claims, jku=key_server),
        forge(claims, x5u=key_server),
        forge(claims, jwk=public_jwk),
        forge(claims, kid="../../../../dev/null"),
        forge(claims, kid="x' UNION SELECT 'secret"),
        forge(claims, crit=["exp"]),
        jwt.encode(claims, attacker, algorithm="EdDSA", headers={"jwk": public_jwk}),
    ]
    for token in forged:
        assert await me_status(api, token) == 401
    assert _Recorder.requests == []


@pytest.fixture
async def eddsa_api(settings: Settings) -> AsyncIterator[Api]:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    asymmetric = settings.model_copy(
        update={
            "jwt_algorithm": JwtAlgorithm.EDDSA,
            "jwt_private_key": SecretStr(pem.decode()),
            "jwt_secret": None,
        }
    )
    async for api in api_for(asymmetric):
        yield api


async def test_an_asymmetric_key_publishes_a_jwks_that_verifies_its_tokens(
    eddsa_api: Api, email: str
) -> None:
    pair = await eddsa_api.sign_up(email)
    jwks = (await eddsa_api.http.get("/.well-known/jwks.json")).json()
    [key] = jwks["keys"]
    assert key["kty"] == "OKP"
    assert key["alg"] == "EdDSA"
    assert "d" not in key
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == key["kid"]
    public_key = jwt.PyJWK(key).key
    claims = jwt.decode(
        pair["access_token"], public_key, algorithms=["EdDSA"], audience="computebill-api"
    )
    assert claims["sub"] == pair["user"]["id"]
    assert await me_status(eddsa_api, pair["access_token"]) == 200


async def test_hs256_signed_with_the_public_key_is_refused(eddsa_api: Api, email: str) -> None:
    pair = await eddsa_api.sign_up(email)
    [key] = (await eddsa_api.http.get("/.well-known/jwks.json")).json()["keys"]
    public_pem = jwt.PyJWK(key).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = claims_of(pair["access_token"])
    # PyJWT refuses to HMAC with a PEM key, so the confused token is assembled by hand.
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key['kid']})}.{b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert await me_status(eddsa_api, confused) == 401
