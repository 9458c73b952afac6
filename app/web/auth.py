"""API keys: which credential a request carries and whether it is one of `server.api_keys`.

A client shows a key in one of these forms: `Authorization: Bearer KEY` (every REST route; OpenAI
clients), HTTP Basic with the key as the password (AUTOMATIC1111 clients, under /sdapi), `?token=KEY`
on /ws (browsers cannot set headers on a WebSocket), or the studio's session cookie set by the sign-in
page (a digest of the key, never the key itself). Keys are compared in constant time, each against every
configured key, and never logged.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

SESSION_COOKIE = "ai_artist_session"
SIGN_IN_PATH = "/signin"
A1111_PREFIX = "/sdapi/"


def generate_key() -> str:
    """A fresh random key (for a non-loopback host started without one)."""
    return secrets.token_urlsafe(24)


def session_token(key: str) -> str:
    """What the studio's cookie holds for `key`: a digest, so the cookie never carries the key."""
    return hmac.new(key.encode(), b"ai-artist studio session", hashlib.sha256).hexdigest()


class Keys:
    """The configured keys; `accepts` and `accepts_session` answer in time independent of where they differ."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [key.encode() for key in keys]
        self._sessions = [session_token(key.decode()).encode() for key in self._keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    @staticmethod
    def _any_equal(candidate: str, known: list[bytes]) -> bool:
        given = candidate.encode("utf-8", "surrogateescape")
        found = False
        for key in known:  # no early exit: every key is compared
            found |= hmac.compare_digest(given, key)
        return found

    def accepts(self, candidate: str | None) -> bool:
        return candidate is not None and self._any_equal(candidate, self._keys)

    def accepts_session(self, token: str | None) -> bool:
        return token is not None and self._any_equal(token, self._sessions)


def header_key(authorization: str | None, path: str) -> str | None:
    """The key of an `Authorization` header: Bearer anywhere, Basic (the password) under /sdapi."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic" and path.startswith(A1111_PREFIX):
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def cookie_value(cookie_header: str | None, name: str = SESSION_COOKIE) -> str | None:
    for part in (cookie_header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def query_token(query_string: bytes) -> str | None:
    values = parse_qs(query_string.decode("latin-1")).get("token")
    return values[0] if values else None


def authorized(keys: Keys, headers: Mapping[str, str], path: str, query_string: bytes, websocket: bool) -> bool:
    """Whether a request (or WebSocket handshake) carries one of the keys in any accepted form."""
    if keys.accepts(header_key(headers.get("authorization"), path)):
        return True
    if websocket and keys.accepts(query_token(query_string)):
        return True
    return keys.accepts_session(cookie_value(headers.get("cookie")))
