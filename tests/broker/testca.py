"""A throwaway certificate authority for broker tests: CA, server and device certificates, CRL.

Certificates a real CA would never issue (expired, from another CA) are the point of some tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.secrets import write_secret

_DAY = dt.timedelta(days=1)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class ThrowawayAuthority:
    """A CA under `folder` (ca.crt, server.crt/key, crl.pem) that issues device certificates."""

    folder: Path
    name: str = "lantaarn test CA"
    key: ec.EllipticCurvePrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)
    revoked: dict[str, int] = field(default_factory=dict)
    serials: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM)."""
        return self.folder / "ca.crt"

    def _issue(
        self,
        common_name: str,
        *,
        server: bool,
        valid_days: float = 30.0,
        sans: list[x509.GeneralName] | None = None,
    ) -> tuple[bytes, bytes, int]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - 2 * _DAY)
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), serial

    def issue_server(self) -> tuple[Path, Path]:
        """The broker's certificate for localhost, ::1 and 127.0.0.1."""
        sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        cert, key, _ = self._issue("localhost", server=True, sans=sans)
        (self.folder / "server.crt").write_bytes(cert)
        # The broker reads its key after dropping to its own user.
        write_secret(self.folder / "server.key", key, broker_reads=True)
        return self.folder / "server.crt", self.folder / "server.key"

    def issue_device(self, identity: str, *, valid_days: float = 30.0) -> tuple[Path, Path]:
        """A device certificate whose CN is `identity` (`{tenant}/{deviceId}`), as files."""
        cert, key, serial = self._issue(identity, server=False, valid_days=valid_days)
        self.serials[identity] = serial
        stem = identity.replace("/", "_") + ("-expired" if valid_days < 0 else "")
        (self.folder / f"{stem}.crt").write_bytes(cert)
        (self.folder / f"{stem}.key").write_bytes(key)
        return self.folder / f"{stem}.crt", self.folder / f"{stem}.key"

    def revoke(self, identity: str) -> None:
        """Put the identity's last certificate on the CRL (call `write_crl` after)."""
        self.revoked[identity] = self.serials[identity]

    def write_crl(self) -> Path:
        """The CRL with every revoked certificate."""
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + 7 * _DAY)
        )
        for serial in self.revoked.values():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        path = self.folder / "crl.pem"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path
