"""Bearer-token rules (graphtrain.serve.auth); the HTTP side is in tests/integration/test_serve.py."""

import pytest

from graphtrain.errors import ConfigError
from graphtrain.serve import auth

TOKEN = "a-long-random-token-0123456789"


def test_beyond_loopback_a_token_is_required(monkeypatch, tmp_path):
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    assert auth.server_token_digest("127.0.0.1", None, False) is None  # open on loopback by default
    with pytest.raises(ConfigError, match=r"host.*0\.0\.0\.0.*GRAPHTRAIN_SERVE_TOKEN"):
        auth.server_token_digest("0.0.0.0", None, False)
    with pytest.raises(ConfigError, match="require_token"):
        auth.server_token_digest("127.0.0.1", None, True)
    monkeypatch.setenv(auth.TOKEN_ENV, TOKEN)
    assert auth.server_token_digest("0.0.0.0", None, False) == auth.digest(TOKEN)
    file = tmp_path / "token"
    file.write_text("another-long-random-token-42\n")
    assert auth.server_token_digest("0.0.0.0", str(file), False) == auth.digest("another-long-random-token-42")
    with pytest.raises(ConfigError, match="token_file"):
        auth.server_token_digest("0.0.0.0", str(tmp_path / "missing"), False)
    monkeypatch.setenv(auth.TOKEN_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        auth.server_token_digest("0.0.0.0", None, False)


def test_requests_pass_with_the_right_bearer_only():
    expected = auth.digest(TOKEN)
    assert auth.authorized("/recommend", f"Bearer {TOKEN}", expected)
    assert auth.authorized("/recommend", f"bearer {TOKEN}", expected)
    assert not auth.authorized("/recommend", None, expected)
    assert not auth.authorized("/recommend", f"Bearer {TOKEN}x", expected)
    assert not auth.authorized("/recommend", f"Basic {TOKEN}", expected)
    assert auth.authorized("/health", None, expected) and auth.authorized("/openapi.json", None, expected)
    assert auth.authorized("/recommend", None, None)  # no token configured: open
