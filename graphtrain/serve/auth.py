"""Bearer-token access to the HTTP API.

The token comes from ``$GRAPHTRAIN_SERVE_TOKEN`` or ``ServeConfig.token_file`` and is
required whenever the app binds anything but loopback (or on loopback with
``require_token``). Replicas receive only its SHA-256 digest, so the token itself
never lands in Serve's stored config; a request passes when the digest of its
``Authorization: Bearer <token>`` matches, compared in constant time. Probes, the
try-it page and the API description stay public; every answer (and its ``reason``,
which tells whether a user id is known) needs the token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Optional

from graphtrain.errors import ConfigError

TOKEN_ENV = "GRAPHTRAIN_SERVE_TOKEN"
PUBLIC_PATHS = frozenset({"/", "/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_TOKEN_CHARS = 16


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def server_token_digest(host: str, token_file: Optional[str], require_token: bool) -> Optional[str]:
    """The digest replicas check, or None where the API is open (loopback, no token).
    Raises ConfigError, naming the fix, where a token is needed and missing or weak."""
    token = os.environ.get(TOKEN_ENV)
    if token_file is not None:
        try:
            with open(token_file) as f:
                token = f.read().strip()
        except OSError as err:
            raise ConfigError("token_file", token_file, f"cannot be read ({err})") from err
    if token is None:
        if host not in LOOPBACK:
            raise ConfigError("host", host, f"binding beyond loopback needs a bearer token: set ${TOKEN_ENV} or --token-file")
        if require_token:
            raise ConfigError("require_token", True, f"no token given: set ${TOKEN_ENV} or --token-file")
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError("token", "<hidden>", f"use a random token of at least {MIN_TOKEN_CHARS} characters "
                                               "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return digest(token)


# The digest this process's replica requires (None: open API). Kept here, in an
# importable module, because Serve ships the deployment class by value: a global set
# from its __init__ would land in a copy of the app module's namespace.
_required: dict[str, Optional[str]] = {"digest": None}


def require(token_digest: Optional[str]) -> None:
    _required["digest"] = token_digest


def required_digest() -> Optional[str]:
    return _required["digest"]


def authorized(path: str, header: Optional[str], expected: Optional[str]) -> bool:
    """Whether a request to ``path`` with this ``Authorization`` header may pass."""
    if expected is None or path in PUBLIC_PATHS:
        return True
    scheme, _, presented = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(digest(presented.strip()), expected)
