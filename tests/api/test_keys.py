"""The key store and `lantaarn keys`: shown once, stored as a hash, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

from api.keys import InvalidKeySpec, KeyStore, Role, UnknownKey, api_keys
from devices import Registry, Tenant
from lantaarn.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A registry database with one tenant."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam", ()))
    return url


def test_a_key_verifies_and_only_its_hash_is_stored(url: str) -> None:
    with KeyStore(url) as store:
        key, secret = store.create(Role.VIEWER, ["GM0363"], name="kaart")
        assert store.verify(secret) == key
        assert key.tenants == frozenset({"GM0363"})
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(select(api_keys)).mappings().one()
    engine.dispose()
    secret_part = secret[len("ltn_") + 16 + 1 :]  # ltn_<16 hex id>_<secret>
    assert all(secret_part not in str(value) for value in row.values())
    assert len(row["digest"]) == 64


def test_wrong_or_malformed_keys_do_not_verify(url: str) -> None:
    with KeyStore(url) as store:
        _, secret = store.create(Role.ADMIN)
        other_key, other = store.create(Role.ADMIN)
        key_id = secret[4:20]
        assert store.verify(f"ltn_{key_id}_{other[21:]}") is None  # another key's secret
        assert store.verify(secret + "x") is None
        assert store.verify("") is None
        assert store.verify(secret.upper()) is None
        assert store.verify(other) == other_key


def test_revoked_keys_stop_working_and_stay_listed(url: str) -> None:
    with KeyStore(url) as store:
        key, secret = store.create(Role.OPERATOR, None, name="ploeg")
        first = store.revoke(key.key_id)
        assert first.revoked_at is not None
        assert store.revoke(key.key_id).revoked_at == first.revoked_at
        assert store.verify(secret) is None
        assert [k.key_id for k in store.list_keys()] == [key.key_id]
        assert store.list_keys(include_revoked=False) == []
        with pytest.raises(UnknownKey):
            store.revoke("0000000000000000")


def test_bad_tenants_are_refused(url: str) -> None:
    with KeyStore(url) as store:
        with pytest.raises(InvalidKeySpec):
            store.create(Role.VIEWER, ["GM 0363"])
        with pytest.raises(InvalidKeySpec):
            store.create(Role.VIEWER, [])
        assert store.list_keys() == []


def test_the_key_table_lives_beside_the_registry(url: str) -> None:
    with KeyStore(url), Registry(url) as registry:
        assert registry.tenant("GM0363").name == "Amsterdam"
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"api_keys", "tenants", "devices"} <= tables


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.includes(Role.OPERATOR)
    assert Role.OPERATOR.includes(Role.VIEWER)
    assert not Role.VIEWER.includes(Role.OPERATOR)
    assert not Role.OPERATOR.includes(Role.ADMIN)


def test_the_command_creates_lists_and_revokes(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LANTAARN_REGISTRY_URL", url)
    monkeypatch.setenv("LANTAARN_DATA_DIR", str(tmp_path))
    assert (
        main(["keys", "create", "--role", "viewer", "--tenant", "GM0363", "--name", "kaart"]) == 0
    )
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("ltn_")
    assert "cannot be shown again" in err
    with KeyStore(url) as store:
        key = store.verify(secret)
    assert key is not None
    assert key.role is Role.VIEWER

    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key.key_id in listing
    assert "kaart" in listing
    assert secret not in listing

    assert main(["keys", "revoke", key.key_id]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--active"]) == 0
    assert key.key_id not in capsys.readouterr().out
    with KeyStore(url) as store:
        assert store.verify(secret) is None


def test_the_command_refuses_unknown_tenants_and_keys(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LANTAARN_REGISTRY_URL", url)
    assert main(["keys", "create", "--role", "admin", "--tenant", "GM9999"]) == 2
    assert "GM9999" in capsys.readouterr().err
    assert main(["keys", "revoke", "0123456789abcdef"]) == 1
    assert "0123456789abcdef" in capsys.readouterr().err
    with KeyStore(url) as store:
        assert store.list_keys() == []
