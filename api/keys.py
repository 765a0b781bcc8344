"""API keys: created by `lantaarn keys create`, shown once, stored only as a salted hash.

A key reads `ltn_<id>_<secret>`: the id finds the row, the 32-byte random secret proves the
caller. Because the secret has 256 bits of entropy, one SHA-256 over a per-key salt and the secret
is as strong as a slow password hash would be, and cheap enough to check on every request.

The table lives in the registry's database but in a MetaData of its own: the registry's schema
is managed by Alembic migrations in `devices/`, while this table is created on `open()` when it
is missing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping

from devices.registry.rows import aware
from devices.registry.store import Database
from devices.topics import TENANT_RE

log = logging.getLogger(__name__)

KEY_PREFIX = "ltn"
_KEY_RE = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})")

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    # A JSON list of tenant codes; NULL means every tenant.
    Column("tenants", Text, nullable=True),
    Column("salt", String(32), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


class Role(StrEnum):
    """What a key may do; each role may also do everything of the roles before it."""

    VIEWER = "viewer"  # read the telemetry and devices of its tenants
    OPERATOR = "operator"  # also change devices of its tenants
    ADMIN = "admin"  # everything, tenants included

    @property
    def rank(self) -> int:
        """Position in viewer < operator < admin."""
        return _RANKS[self]

    def includes(self, other: Role) -> bool:
        """Whether this role may do what `other` may."""
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class KeyStoreError(Exception):
    """Base of the key store's errors."""


class UnknownKey(KeyStoreError):
    """No key has this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")
        self.key_id = key_id


class InvalidKeySpec(KeyStoreError):
    """A key cannot be created as asked (a bad tenant code, an empty tenant list)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key without its secret; `tenants` None means every tenant."""

    key_id: str
    name: str
    role: Role
    tenants: frozenset[str] | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _key(row: RowMapping) -> ApiKey:
    tenants = None if row["tenants"] is None else frozenset(json.loads(row["tenants"]))
    created = aware(row["created_at"])
    assert created is not None
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=Role(row["role"]),
        tenants=tenants,
        created_at=created,
        revoked_at=aware(row["revoked_at"]),
    )


class KeyStore(Database):
    """API keys in the registry's database; use as a context manager."""

    def _prepare(self, engine: Engine) -> None:
        """Create the key table when it is missing."""
        metadata.create_all(engine)

    def create(
        self, role: Role, tenants: Iterable[str] | None = None, name: str = ""
    ) -> tuple[ApiKey, str]:
        """Store a new key; returns it and its plain text, which is never stored nor shown again.

        `tenants` None gives a key for every tenant.
        """
        codes = None if tenants is None else frozenset(tenants)
        if codes is not None:
            if not codes:
                raise InvalidKeySpec("name at least one tenant, or none for every tenant")
            bad = sorted(c for c in codes if not TENANT_RE.fullmatch(c))
            if bad:
                raise InvalidKeySpec(
                    f"tenant code(s) {', '.join(map(repr, bad))} must match [A-Za-z0-9_-]{{1,32}}"
                )
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        created = datetime.now(UTC)
        with self._begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    role=role.value,
                    tenants=None if codes is None else json.dumps(sorted(codes)),
                    salt=salt,
                    digest=_digest(salt, secret),
                    created_at=created,
                )
            )
        log.info("created API key %s (%s)", key_id, role.value)
        key = ApiKey(key_id, name, role, codes, created, None)
        return key, f"{KEY_PREFIX}_{key_id}_{secret}"

    def list_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._begin() as conn:
            return [_key(row) for row in conn.execute(query).mappings()]

    def key(self, key_id: str) -> ApiKey:
        """The key with id `key_id`."""
        with self._begin() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings()
            found = row.first()
        if found is None:
            raise UnknownKey(key_id)
        return _key(found)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key from now on; revoking it again keeps the first time."""
        with self._begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        key = self.key(key_id)
        log.info("revoked API key %s", key_id)
        return key

    def verify(self, presented: str) -> ApiKey | None:
        """The active key whose plain text this is, else None (malformed, unknown, revoked)."""
        match = _KEY_RE.fullmatch(presented)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self._begin() as conn:
            row = (
                conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
            )
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(_digest(row["salt"], secret), row["digest"]):
            return None
        return _key(row)
