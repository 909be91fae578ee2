"""Access tokens (JWT) and refresh tokens (opaque, stored as keyed digests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import jwt
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from computebill.config import JwtAlgorithm, Settings

ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
REQUIRED_CLAIMS = ["sub", "sid", "typ", "iat", "exp", "iss", "aud", "jti"]
LEEWAY_SECONDS = 30
# Headers that point at keys elsewhere, or demand extensions we do not implement: never honoured.
REFUSED_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit"})


class InvalidAccessToken(Exception):
    """The token is not one of ours, or no longer valid; the reason is for logs, not clients."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


class AccessTokenCodec:
    """Signs and verifies access tokens with the configured algorithm and key."""

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        self._private_key: Ed25519PrivateKey | RSAPrivateKey | None = None
        self._secret: bytes | None = None
        if self.algorithm is JwtAlgorithm.HS256:
            assert settings.jwt_secret is not None
            self._secret = settings.jwt_secret.get_secret_value().encode()
        else:
            assert settings.jwt_private_key is not None
            pem = settings.jwt_private_key.get_secret_value().encode()
            key = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(key, Ed25519PrivateKey | RSAPrivateKey):
                raise ValueError("JWT_PRIVATE_KEY must be an Ed25519 or RSA private key")
            self._private_key = key
        # Built once: the keys, and a decoder whose options are merged once, not per token.
        self._signing_key: Any = self._secret if self._secret is not None else self._private_key
        self._verifying_key: Any = (
            self._secret if self._private_key is None else self._private_key.public_key()
        )
        self._decoder = jwt.PyJWT(
            options={"require": REQUIRED_CLAIMS, "strict_aud": True, "verify_iat": True}
        )
        self._algorithms = [self.algorithm.value]  # pinned: the token never chooses

    @cached_property
    def key_id(self) -> str | None:
        """The public key's RFC 7638 thumbprint; None for a shared secret."""
        if self._private_key is None:
            return None
        jwk = self.public_jwk()
        members = {k: jwk[k] for k in sorted(jwk) if k in {"crv", "e", "kty", "n", "x"}}
        digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def public_jwk(self) -> dict[str, Any]:
        assert self._private_key is not None
        algorithm = jwt.get_algorithm_by_name(self.algorithm.value)
        jwk: dict[str, Any] = algorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        return jwk

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        if self._private_key is None:
            return {"keys": []}
        jwk = self.public_jwk() | {"use": "sig", "alg": self.algorithm.value, "kid": self.key_id}
        return {"keys": [jwk]}

    # Access tokens live on the wall clock (PyJWT checks exp/iat/nbf against it), unlike sessions,
    # whose expiry follows the injectable clock.
    def issue(self, *, user_id: uuid.UUID, session_id: uuid.UUID) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "typ": ACCESS_TOKEN_TYPE,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(
            claims, self._signing_key, algorithm=self.algorithm.value, headers=headers
        )

    def verify(self, token: str) -> AccessClaims:
        """One parse and one signature check; the header is judged once the signature holds
        (nothing in it is ever fetched or followed, so the order changes no outcome)."""
        try:
            decoded = self._decoder.decode_complete(
                token,
                self._verifying_key,
                algorithms=self._algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
            )
            header: dict[str, Any] = decoded["header"]
            if REFUSED_HEADERS & header.keys():
                raise InvalidAccessToken(
                    f"refused header {sorted(REFUSED_HEADERS & header.keys())}"
                )
            if header.get("kid") != self.key_id:
                raise InvalidAccessToken("unknown key id")
            claims: dict[str, Any] = decoded["payload"]
            if claims["typ"] != ACCESS_TOKEN_TYPE:
                raise InvalidAccessToken("not an access token")
            return AccessClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                session_id=uuid.UUID(str(claims["sid"])),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
            )
        except (jwt.InvalidTokenError, ValueError, TypeError) as error:
            raise InvalidAccessToken(str(error)) from error


class RefreshTokenCrypto:
    """Refresh tokens are 256-bit values; the database holds only HMAC-SHA256(pepper, token)."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)

    def digest(self, token: str) -> bytes:
        return hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()

    def child_of(self, token: str) -> str:
        """The token that replaces `token` on rotation.

        Derived (with a separate domain tag) rather than drawn at random so that, during the grace
        window, a retried refresh can answer with the very same child without our ever storing a
        token in plain text. Only a holder of the parent can compute it.
        """
        mac = hmac.new(self._pepper, b"refresh-child\x00" + token.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def _derived_key(pepper: bytes, purpose: bytes) -> bytes:
    """A key of its own for one purpose, derived from the pepper (HKDF-SHA256), so no two uses
    of the pepper share a key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(pepper)


class SecretBox:
    """Secrets the platform must read back (TOTP secrets), encrypted at rest with Fernet
    (AES-128-CBC with HMAC-SHA256) under a key derived from the pepper."""

    def __init__(self, pepper: bytes) -> None:
        key = _derived_key(pepper, b"computebill totp secret")
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, sealed: bytes) -> str:
        return self._fernet.decrypt(sealed).decode()


class SignedValues:
    """Values a browser keeps for us and gives back: "<value>.<issued at, unix seconds>.<MAC>",
    signed with a key derived from the pepper for one purpose, so a value signed for one use is
    refused by every other. Nothing is stored: a value is good until it ages out."""

    def __init__(self, pepper: bytes, *, purpose: bytes, lifetime: timedelta) -> None:
        self._key = _derived_key(pepper, purpose)
        self.lifetime = lifetime

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, value: str, *, now: datetime) -> str:
        payload = f"{value}.{int(now.timestamp())}"
        return f"{payload}.{self._mac(payload)}"

    def read(self, token: str | None, *, now: datetime, max_length: int = 200) -> str | None:
        """The value signed, or None when the token is not one of ours (for this purpose), or
        too old."""
        if not token or len(token) > max_length or token.count(".") < 2:
            return None
        value, issued, mac = token.rsplit(".", 2)
        if not hmac.compare_digest(mac.encode(), self._mac(f"{value}.{issued}").encode()):
            return None
        try:
            issued_at = datetime.fromtimestamp(int(issued), tz=UTC)
        except ValueError:
            return None
        return value if issued_at <= now < issued_at + self.lifetime else None


DEVICE_TOKEN_DAYS = 365


class KnownDevices:
    """Device tokens: "<user id>.<issued at, unix seconds>.<MAC>" (`SignedValues`). A device
    holding a valid one for an account has signed in to it before, so a correct password from
    it passes the account's failed-login limit (docs/architecture.md §6)."""

    def __init__(self, pepper: bytes) -> None:
        self._signed = SignedValues(
            pepper, purpose=b"computebill known device", lifetime=timedelta(days=DEVICE_TOKEN_DAYS)
        )
        self.lifetime = self._signed.lifetime

    def issue(self, user_id: uuid.UUID, *, now: datetime) -> str:
        return self._signed.issue(user_id.hex, now=now)

    def owner(self, token: str | None, *, now: datetime) -> uuid.UUID | None:
        """The account the token was issued to, or None when it is not one of ours or too old."""
        user_hex = self._signed.read(token, now=now)
        try:
            return None if user_hex is None else uuid.UUID(hex=user_hex)
        except ValueError:
            return None
