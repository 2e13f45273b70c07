"""Registration tokens: one-time passphrase, hashed storage, refusals with codes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from vmdr.transport.auth import BadClientName, BadPassphrase, TokenStore, Unauthorized


def test_register_with_passphrase_yields_token_that_authenticates(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    passphrase = store.passphrase()
    token = store.register("process-server-1", passphrase)
    assert store.authenticate(f"Bearer {token}") == "process-server-1"
    # The passphrase is one-time: it has been replaced.
    assert store.passphrase() != passphrase
    with pytest.raises(BadPassphrase) as err:
        store.register("other", passphrase)
    assert err.value.code == "VMDR-E0352"


def test_tokens_are_stored_hashed_and_private(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.issue("lab")
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text
    assert json.loads(text)[0]["name"] == "lab"
    for name in ("tokens.json", "registration-passphrase"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    # A new store on the same folder (a restarted service) knows the client.
    assert TokenStore(tmp_path).authenticate(f"Bearer {token}") == "lab"


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic abc", "Bearer not-a-token", "bearer  "]
)
def test_missing_or_wrong_token_is_refused(tmp_path: Path, header: str | None) -> None:
    store = TokenStore(tmp_path)
    store.issue("lab")
    with pytest.raises(Unauthorized) as err:
        store.authenticate(header)
    assert err.value.code == "VMDR-E0351"
    assert err.value.http_status == 401


@pytest.mark.parametrize("name", ["", "../x", "a/b", "x" * 65, "-lead"])
def test_bad_client_names_are_refused(tmp_path: Path, name: str) -> None:
    store = TokenStore(tmp_path)
    with pytest.raises(BadClientName):
        store.register(name, store.passphrase())


def test_reregistering_a_name_replaces_its_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    old = store.issue("ps")
    new = store.issue("ps")
    assert store.authenticate(f"Bearer {new}") == "ps"
    with pytest.raises(Unauthorized):
        store.authenticate(f"Bearer {old}")
