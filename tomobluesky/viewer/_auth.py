"""Whose key the viewer reads Tiled with.

In the default (protected) mode the viewer holds no key: every API request
brings the reader's own Tiled key, in an ``Authorization`` header or in the
HttpOnly cookie the page's login form sets, and the viewer reads Tiled with
that key, so Tiled alone decides what the person may see. In public mode the
viewer reads with one key it was given (a read-only one) and serves anyone.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable

import httpx

COOKIE = "tomobluesky_key"
_MAX_KEY_LENGTH = 512


class Unauthorized(Exception):
    """The request brought no usable key, or Tiled refused it (HTTP 401)."""


class CatalogUnavailable(Exception):
    """Tiled could not be reached, or answered with an error of its own (HTTP 502/503)."""


def connector(tiled: str | Callable[[str | None], Any]) -> Callable[[str | None], Any]:
    """``key -> tiled client``, from a Tiled URI or such a function itself."""
    if callable(tiled):
        return tiled
    uri = str(tiled)

    def connect(key: str | None):
        from tiled.client import from_uri

        if key is not None:
            return from_uri(uri, api_key=key)
        # Anonymous (public mode over a public Tiled): never fall back to an interactive login
        # or to the tokens the operator's own Tiled logins left in their cache.
        from tiled.client.constructors import from_context
        from tiled.client.context import Context

        context, path = Context.from_any_uri(uri)
        if not context.authenticated and context.server_info.authentication.required:
            raise Unauthorized("the catalogue does not allow anonymous reads: give the viewer a read-only key")
        return from_context(context, node_path_parts=path, remember_me=False)

    return connect


def valid_key(key: str | None) -> bool:
    """Tiled keys are short printable ASCII without spaces; anything else is refused here,
    before it reaches an HTTP header."""
    return (bool(key) and len(key) <= _MAX_KEY_LENGTH and key.isascii() and key.isprintable()
            and not any(c.isspace() for c in key))


def request_key(request) -> str | None:
    """The Tiled key a request brings: ``Authorization: Bearer <key>`` (or Tiled's own
    ``Apikey <key>``), else the login cookie; None when it brings none."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "apikey") and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def tiled_refused(exc: BaseException) -> bool:
    """Did Tiled answer 401/403 (the key is unknown, revoked, or may not read this)?"""
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (401, 403)


def connect_checked(connect: Callable[[str | None], Any], key: str | None):
    """``connect(key)`` with Tiled's answers turned into the viewer's two errors."""
    try:
        return connect(key)
    except httpx.HTTPStatusError as exc:
        if tiled_refused(exc):
            raise Unauthorized("the catalogue refused this API key") from None
        raise CatalogUnavailable(f"the catalogue answered HTTP {exc.response.status_code}") from None
    except httpx.TransportError as exc:
        raise CatalogUnavailable(f"the catalogue is unreachable ({type(exc).__name__})") from None
    except RuntimeError as exc:  # tiled's "This server requires API key authentication"
        if "authentication" in str(exc).lower():
            raise Unauthorized("the catalogue requires an API key") from None
        raise


class ClientCache:
    """Tiled clients, one per key, the ``size`` most recently used kept.

    A key is only cached once Tiled accepted it, so made-up keys cannot push the
    real ones out. Entries are found by the key's SHA-256, not the key itself.
    Tiled still checks the key on every read, so a key revoked in Tiled stops
    working at once; ``forget`` then drops its client.
    """

    def __init__(self, connect: Callable[[str | None], Any], size: int = 16):
        if size < 1:
            raise ValueError("the client cache needs room for at least one client")
        self._connect, self._size = connect, size
        self._clients: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get(self, key: str | None):
        if not valid_key(key):
            raise Unauthorized("no API key: log in on the page, or send 'Authorization: Bearer <your Tiled key>'"
                               if not key else "that is not a well-formed API key")
        digest = self._digest(key)
        with self._lock:
            if digest in self._clients:
                self._clients.move_to_end(digest)
                return self._clients[digest]
        client = connect_checked(self._connect, key)  # outside the lock: a slow Tiled blocks no other key
        with self._lock:
            self._clients[digest] = client
            self._clients.move_to_end(digest)
            while len(self._clients) > self._size:
                self._clients.popitem(last=False)
        return client

    def forget(self, key: str | None):
        if key:
            with self._lock:
                self._clients.pop(self._digest(key), None)

    def __len__(self) -> int:
        return len(self._clients)
