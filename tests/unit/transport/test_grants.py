"""Grants: a role accepts what the configuration server signed, for what it
signed it, until it expires; nothing else."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vmdr.transport.grants import (
    MATERIALISE,
    REPLICATE,
    TTL,
    GrantRefused,
    GrantSigner,
    GrantVerifier,
)

NAMES = {"id": "fb-a-d0", "disk": "fb-a-d0", "source": "pageblob://acct/c/b",
         "datastore": "vmfs-01", "path": "a/a-flat.vmdk"}  # fmt: skip


def pair() -> tuple[GrantSigner, GrantVerifier]:
    signer = GrantSigner(Ed25519PrivateKey.generate())
    return signer, GrantVerifier(signer.public_pem().encode())


def refused(verifier: GrantVerifier, grant: str | None, purpose: str = REPLICATE,
            names: dict[str, object] = NAMES, now: float | None = None) -> str:  # fmt: skip
    with pytest.raises(GrantRefused) as err:
        verifier.check(grant, purpose, "test", names, now=now)
    assert err.value.code == "VMDR-E0360" and err.value.http_status == 403
    return err.value.message


def test_a_grant_covers_what_it_names_and_any_subset() -> None:
    signer, verifier = pair()
    grant = signer.sign(REPLICATE, NAMES)
    assert verifier.check(grant, REPLICATE, "test", NAMES)["source"] == NAMES["source"]
    # The master target checks only the names it acts on.
    subset = {k: NAMES[k] for k in ("disk", "datastore", "path")}
    verifier.check(grant, REPLICATE, "test", subset)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_grant_for_something_else_is_refused(name: str) -> None:
    signer, verifier = pair()
    grant = signer.sign(REPLICATE, NAMES)
    assert f"this {name}" in refused(verifier, grant, names={**NAMES, name: "/etc/shadow"})


def test_missing_forged_foreign_expired_and_misused_grants_are_refused() -> None:
    signer, verifier = pair()
    assert "no grant" in refused(verifier, None)
    assert "malformed" in refused(verifier, "g1.not-a-grant")
    assert "malformed" in refused(verifier, "x" * 9000)
    other, _ = pair()
    assert "not signed" in refused(verifier, other.sign(REPLICATE, NAMES))
    # Claims changed after signing (the signature no longer holds).
    version, _, signature = signer.sign(REPLICATE, NAMES).split(".")
    forged = GrantSigner(Ed25519PrivateKey.generate()).sign(REPLICATE, {**NAMES, "path": "x"})
    assert "not signed" in refused(verifier, f"{version}.{forged.split('.')[1]}.{signature}")
    grant = signer.sign(REPLICATE, NAMES, now=1000.0)
    assert "expired" in refused(verifier, grant, now=1000.0 + TTL[REPLICATE] + 1)
    verifier.check(grant, REPLICATE, "test", NAMES, now=1000.0 + TTL[REPLICATE] - 1)
    assert "for 'replicate'" in refused(verifier, signer.sign(REPLICATE, NAMES), MATERIALISE)


def test_the_signing_key_follows_the_servers_secret_key() -> None:
    """A server restored with its secret.key signs as before: the roles'
    --grant-key stays valid; another key's grants are refused."""
    a = GrantSigner.from_secret(b"k" * 44)
    assert a.public_pem() == GrantSigner.from_secret(b"k" * 44).public_pem()
    assert a.public_pem() != GrantSigner.from_secret(b"j" * 44).public_pem()
    verifier = GrantVerifier(a.public_pem().encode())
    verifier.check(GrantSigner.from_secret(b"k" * 44).sign(REPLICATE, NAMES), REPLICATE, "t", NAMES)
    assert "private" in repr(a) and "k" * 4 not in repr(a)


def test_a_grant_is_exact_in_type_orders_by_issue_time_and_may_reopen_when_expired() -> None:
    signer, verifier = pair()
    grant = signer.sign(MATERIALISE, {"disk": "d", "point": 1.0, "datastore": None}, now=5.0)
    names = {"disk": "d", "point": 1.0, "datastore": None}
    claims = verifier.check(grant, MATERIALISE, "t", names, now=6.0)
    assert claims["iat"] == 5000  # milliseconds: two grants a moment apart are ordered
    for names in ({"point": 1}, {"point": "1.0"}, {"point": True}, {"absent": None}):
        assert "does not cover" in refused(verifier, grant, MATERIALISE, names, now=6.0)
    late = 5.0 + TTL[MATERIALISE] + 1
    assert "expired" in refused(verifier, grant, MATERIALISE, {"disk": "d"}, now=late)
    verifier.check(grant, MATERIALISE, "t", {"disk": "d"}, now=late, expired_ok=True)
