"""Passwords (argon2id), access JWTs (HS256) and opaque refresh tokens.

Access tokens are verified by every service with the shared secret and never touch the database, so
they are short-lived; refresh tokens are random, stored only as SHA-256 hashes, and rotate on use.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fechatter_core.settings import AuthSettings

_hasher = PasswordHasher()  # argon2id with the library's tuned defaults
# Verifying against this keeps sign-in time the same for unknown emails and wrong passwords.
_DUMMY_HASH = _hasher.hash("fechatter-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    workspace_id: int
    expires_at: int


class TokenError(Exception):
    pass


def issue_access_token(settings: AuthSettings, user_id: int, workspace_id: int) -> str:
    now = int(time.time())
    payload = {
        "sub": str(user_id),
        "wid": workspace_id,
        "iat": now,
        "exp": now + settings.access_ttl_seconds,
        "iss": settings.issuer,
        "aud": settings.audience,
        "typ": "access",
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm="HS256")


def verify_access_token(settings: AuthSettings, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.audience,
            issuer=settings.issuer,
            options={"require": ["exp", "sub", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token") from exc
    if payload.get("typ") != "access":
        raise TokenError("not an access token")
    try:
        return AccessClaims(int(payload["sub"]), int(payload["wid"]), int(payload["exp"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError("invalid token claims") from exc


class AccessTokenCache:
    """Access tokens this process has verified, so a client's next requests skip the signature check.

    Access tokens are stateless (nothing revokes one before its ``exp``: logout and password changes
    revoke refresh tokens), so a verified token stays good exactly until its expiry; an entry is used only
    before then, and afterwards the token is verified again, which refuses it as before. Bounded: the least
    recently used entries go first."""

    def __init__(self, settings: AuthSettings, max_entries: int = 4096) -> None:
        self.settings = settings
        self.max_entries = max_entries
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    def verify(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is not None:
            # PyJWT refuses a token once now >= exp; the same comparison here.
            if time.time() < claims.expires_at:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
        claims = verify_access_token(self.settings, token)
        self._verified[token] = claims
        if len(self._verified) > self.max_entries:
            self._verified.popitem(last=False)
        return claims


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
