"""The dashboard is locked by default: a generated token stored 0600, no token only on loopback."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ledgerstream.core.errors import ConfigError
from ledgerstream.tools.dashboard import settings

pytestmark = pytest.mark.unit


def _resolve(home: Path, **kw):  # type: ignore[no-untyped-def]
    args = dict(home=home, host="127.0.0.1", port=8765, token=None, bootstrap="127.0.0.1:9", topic_prefix="t.",
                public_keys=(), tsa_ca=None)
    return settings.resolve(**{**args, **kw})


def test_a_token_is_generated_once_and_kept_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.TOKEN_ENV, raising=False)
    first = _resolve(tmp_path)
    path = tmp_path / "dashboard" / "token"
    assert first.token and len(first.token) >= 32 and path.read_text().strip() == first.token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert _resolve(tmp_path).token == first.token  # stable across restarts
    assert _resolve(tmp_path / "other").token != first.token


def test_no_token_only_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.TOKEN_ENV, raising=False)
    for host in ("127.0.0.1", "::1", "localhost"):
        assert _resolve(tmp_path, host=host, no_token=True).token is None
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(ConfigError, match="without a token"):
            _resolve(tmp_path, host=host, no_token=True)
    assert not (tmp_path / "dashboard" / "token").exists()
    # a non-loopback bind gets the generated token rather than none
    assert _resolve(tmp_path, host="0.0.0.0").token
