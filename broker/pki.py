"""A deployment's private certificate authority, kept in one folder.

The folder (mode 0700; every file in it 0600, written atomically):

- `ca.crt`, `ca.key`: the authority (EC P-256, 10 years, may sign certificates and CRLs);
- `server.crt`, `server.key`: the broker's certificate (its DNS names and IP addresses);
- `crl.pem`: every revoked serial, which Mosquitto reads as its `crlfile`, after a line of text per
  serial naming its identity, which the broker plugin reads to disconnect that device;
- `issued.json`: what was issued (serial, identity, not-after, revoked-at).

A device's identity is `{tenant}/{deviceId}`, the common name of its certificate: the broker takes
it as the username (`use_identity_as_username`), so the ACL that binds a password login to its own
topics binds a certificate the same way. Devices send a certificate signing request, so their
private key never leaves them; the authority checks the request and decides the whole subject and
every extension itself, never taking one from the request.

Why EC P-256 for the authority: 128-bit security as RSA 3072 offers, with keys and signatures a
tenth the size and handshakes that a lamppost's microcontroller does quickly; every TLS stack we
meet (OpenSSL under Mosquitto 2.0.11, mbedTLS, wolfSSL) verifies ECDSA P-256 with SHA-256.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devices.topics import DEVICE_ID_RE, TENANT_RE

log = logging.getLogger(__name__)

CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
SERVER_CERT: Final = "server.crt"
SERVER_KEY: Final = "server.key"
CRL: Final = "crl.pem"
ISSUED: Final = "issued.json"
_LOCK: Final = ".lock"

CA_VALIDITY: Final = timedelta(days=3652)
LEAF_VALIDITY: Final = timedelta(days=397)
# Once the CRL's nextUpdate has passed, OpenSSL refuses every certificate (Mosquitto 2.0.11
# checked: all device certificates locked out), so it must be rewritten (`lantaarn pki crl`) and
# the broker reloaded well within this. The broker reads the file locally, so a short nextUpdate
# buys no freshness (a reload does); 90 days leaves room for many missed weekly timers.
CRL_VALIDITY: Final = timedelta(days=90)
# Clocks of devices and broker differ a little: a new certificate is valid from a while ago.
_BACKDATE: Final = timedelta(minutes=5)
# RFC 5280's upper bound of a common name, which cryptography enforces.
MAX_IDENTITY_LENGTH: Final = 64
MIN_RSA_BITS: Final = 2048
# Larger keys buy nothing and cost the broker a slow handshake per connect.
MAX_RSA_BITS: Final = 8192
_CURVES: Final = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_DNS_NAME: Final = re.compile(
    r"(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)

DeviceKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

SERVER_KIND: Final = "server"
DEVICE_KIND: Final = "device"


class PkiError(Exception):
    """Something the certificate authority refuses or cannot do."""


class AuthorityMissing(PkiError):
    """The folder holds no certificate authority (run `lantaarn pki init`)."""


class AuthorityExists(PkiError):
    """The folder already holds a certificate authority; it is never overwritten."""


class InvalidIdentity(PkiError):
    """An identity that is not `{tenant}/{deviceId}` by the topic scheme's rules."""


class InvalidCsr(PkiError):
    """A certificate signing request the authority will not sign; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"certificate signing request refused: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """One certificate the authority issued, as `issued.json` records it."""

    serial: int
    identity: str
    kind: str
    not_after: datetime
    revoked_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The record in `issued.json` (serial in hex, times RFC 3339 UTC)."""
        return {
            "serial": f"{self.serial:x}",
            "identity": self.identity,
            "kind": self.kind,
            "not_after": _iso(self.not_after),
            "revoked_at": None if self.revoked_at is None else _iso(self.revoked_at),
        }

    @classmethod
    def of_json(cls, record: dict[str, Any]) -> IssuedCertificate:
        """The record read back."""
        revoked = record.get("revoked_at")
        return cls(
            serial=int(record["serial"], 16),
            identity=str(record["identity"]),
            kind=str(record.get("kind", DEVICE_KIND)),
            not_after=datetime.fromisoformat(record["not_after"]),
            revoked_at=None if revoked is None else datetime.fromisoformat(revoked),
        )


def device_identity(tenant: str, device_id: str) -> str:
    """`{tenant}/{deviceId}`, checked: the certificate's common name and the broker username."""
    if TENANT_RE.fullmatch(tenant) is None:
        raise InvalidIdentity(f"tenant {tenant!r} does not match {TENANT_RE.pattern}")
    if DEVICE_ID_RE.fullmatch(device_id) is None:
        raise InvalidIdentity(f"device id {device_id!r} does not match {DEVICE_ID_RE.pattern}")
    identity = f"{tenant}/{device_id}"
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise InvalidIdentity(
            f"{identity!r} is longer than the {MAX_IDENTITY_LENGTH} characters a certificate's "
            "common name may hold; this device logs in with its password"
        )
    return identity


def check_identity(identity: str) -> str:
    """`identity` if it is a valid `{tenant}/{deviceId}`; InvalidIdentity otherwise."""
    tenant, slash, device_id = identity.partition("/")
    if not slash:
        raise InvalidIdentity(f"{identity!r} is not tenant/deviceId")
    return device_identity(tenant, device_id)


class Authority:
    """A certificate authority in a folder; every change is recorded there before it returns.

    Several processes (the API, the `lantaarn pki` command) may use one folder at once: changes
    to `issued.json` and `crl.pem` hold an exclusive lock on the folder's `.lock` file.
    """

    def __init__(
        self, folder: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.folder = folder
        self.certificate = certificate
        self._key = key

    # -- creating and loading ------------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, *, name: str = "lantaarn device CA") -> Authority:
        """A new authority in `folder` (made 0700), with an empty CRL; never overwrites one."""
        if not name.strip() or len(name) > 64:
            raise PkiError("the authority's name must be 1 to 64 characters")
        _private_folder(folder)
        with _locked(folder):
            if (folder / CA_KEY).exists() or (folder / CA_CERT).exists():
                raise AuthorityExists(f"{folder} already holds a certificate authority")
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lantaarn"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
            now = _now()
            ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            certificate = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE)
                .not_valid_after(now + CA_VALIDITY)
                # Path length 0: this authority signs devices and servers, never another CA.
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_usage(cert_sign=True), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256())
            )
            _write_private(folder / CA_KEY, _key_pem(key))
            _write_private(folder / CA_CERT, certificate.public_bytes(serialization.Encoding.PEM))
            authority = cls(folder, certificate, key)
            authority._save_issued([])
            authority._write_crl_locked()
        log.info("certificate authority %r created in %s", name, folder)
        return authority

    @classmethod
    def load(cls, folder: Path) -> Authority:
        """The authority kept in `folder`."""
        try:
            cert_pem = (folder / CA_CERT).read_bytes()
            key_pem = (folder / CA_KEY).read_bytes()
        except FileNotFoundError:
            raise AuthorityMissing(
                f"{folder} holds no certificate authority; run `lantaarn pki init`"
            ) from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            certificate = x509.load_pem_x509_certificate(cert_pem)
        except (ValueError, TypeError) as exc:
            raise PkiError(f"the authority in {folder} cannot be read: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{folder / CA_KEY} is not an EC private key")
        return cls(folder, certificate, key)

    @property
    def ca_file(self) -> Path:
        """The authority's certificate, for `cafile` of the broker and of clients."""
        return self.folder / CA_CERT

    @property
    def crl_file(self) -> Path:
        """The CRL, for the broker's `crlfile`."""
        return self.folder / CRL

    # -- issuing ---------------------------------------------------------------------------------

    def issue_server(self, names: Sequence[str], addresses: Sequence[str]) -> tuple[Path, Path]:
        """A new key and certificate for the broker: (`server.crt`, `server.key`).

        `names` are DNS names, `addresses` IP addresses (IPv6 listed first in the certificate).
        """
        dns = [_dns_name(n) for n in names]
        try:
            ips = [ipaddress.ip_address(a) for a in addresses]
        except ValueError as exc:
            raise PkiError(str(exc)) from None
        if not dns and not ips:
            raise PkiError("a server certificate needs at least one DNS name or IP address")
        ips.sort(key=lambda ip: ip.version, reverse=True)
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        alt_names += [x509.IPAddress(ip) for ip in ips]
        # Clients check the alternative names; the common name is only a label, which RFC 5280
        # limits to 64 characters.
        common_name = next(
            (n for n in [*dns, *map(str, ips)] if len(n) <= MAX_IDENTITY_LENGTH), "lantaarn broker"
        )
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            self._leaf(common_name, key.public_key(), _now() + LEAF_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        certificate = builder.sign(self._key, hashes.SHA256())
        with _locked(self.folder):
            _write_private(self.folder / SERVER_KEY, _key_pem(key))
            _write_private(
                self.folder / SERVER_CERT, certificate.public_bytes(serialization.Encoding.PEM)
            )
            self._record(certificate, f"server:{common_name}", SERVER_KIND)
        return self.folder / SERVER_CERT, self.folder / SERVER_KEY

    def sign_device_csr(
        self, csr_pem: bytes, identity: str, *, not_after: datetime | None = None
    ) -> bytes:
        """A device certificate (PEM) for the key in `csr_pem`, with common name `identity`.

        The request must carry a valid self-signature over an acceptable key (RSA 2048-8192
        bits, EC P-256/384/521 or Ed25519) and must not ask for a CA, for alternative names or
        for another common name. `not_after` (UTC) is for tests that need an expired
        certificate; the default is about a year.
        """
        identity = check_identity(identity)
        public_key = _checked_key(_parse_csr(csr_pem), identity)
        return self._sign_device(identity, public_key, not_after)

    def issue_device(
        self, identity: str, *, not_after: datetime | None = None
    ) -> tuple[bytes, bytes]:
        """A new EC P-256 key and its device certificate: (cert PEM, key PEM).

        Only for simulated devices: a real device makes its own key and sends a CSR.
        """
        identity = check_identity(identity)
        key = ec.generate_private_key(ec.SECP256R1())
        return self._sign_device(identity, key.public_key(), not_after), _key_pem(key)

    def _sign_device(
        self,
        identity: str,
        public_key: DeviceKey,
        not_after: datetime | None,
    ) -> bytes:
        builder = self._leaf(identity, public_key, not_after or _now() + LEAF_VALIDITY)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        certificate = builder.sign(self._key, hashes.SHA256())
        with _locked(self.folder):
            self._record(certificate, identity, DEVICE_KIND)
        log.info("certificate %x issued to %s", certificate.serial_number, identity)
        return certificate.public_bytes(serialization.Encoding.PEM)

    def _leaf(
        self,
        common_name: str,
        public_key: DeviceKey,
        not_after: datetime,
    ) -> x509.CertificateBuilder:
        """A certificate that is no CA, signed by us, for `public_key`, valid until `not_after`."""
        not_before = min(_now(), not_after - timedelta(days=1)) - _BACKDATE
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )

    # -- revoking --------------------------------------------------------------------------------

    def revoke(self, identity: str) -> None:
        """Revoke every certificate of `identity` (again is a no-op); see `write_crl`."""
        with _locked(self.folder):
            self._revoke_locked([identity])

    def write_crl(
        self, extra_revoked_identities: Iterable[str] = (), *, valid_for: timedelta = CRL_VALIDITY
    ) -> Path:
        """Write `crl.pem` with every revoked serial, valid for `valid_for`; its path.

        `extra_revoked_identities` are revoked first (for example every retired device, so a
        retirement the hook missed is caught up). A negative `valid_for` is for tests that need
        an expired CRL.
        """
        with _locked(self.folder):
            self._revoke_locked(extra_revoked_identities)
            return self._write_crl_locked(valid_for)

    def issued(self) -> list[IssuedCertificate]:
        """Every certificate issued, oldest first."""
        return self._load_issued()

    def _revoke_locked(self, identities: Iterable[str]) -> None:
        wanted = set(identities)
        if not wanted:
            return
        now = _now()
        records = self._load_issued()
        changed = [
            IssuedCertificate(r.serial, r.identity, r.kind, r.not_after, now)
            if r.identity in wanted and r.revoked_at is None
            else r
            for r in records
        ]
        if changed != records:
            self._save_issued(changed)
            for r in changed:
                if r.revoked_at == now:
                    log.info("certificate %x of %s revoked", r.serial, r.identity)

    def _write_crl_locked(self, valid_for: timedelta = CRL_VALIDITY) -> Path:
        now = _now()
        meta = self._load_meta()
        number = int(meta.get("crl_number", 0)) + 1
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(min(now, now + valid_for) - _BACKDATE)
            .next_update(now + valid_for)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )
        revoked = []
        for record in self._load_issued():
            if record.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(record.serial)
                    .revocation_date(record.revoked_at)
                    .build()
                )
                revoked.append(record)
        crl = builder.sign(self._key, hashes.SHA256())
        pem = crl.public_bytes(serialization.Encoding.PEM)
        _write_private(self.crl_file, _named(revoked) + pem)
        self._save_meta({**meta, "crl_number": number})
        return self.crl_file

    # -- issued.json -----------------------------------------------------------------------------

    def _record(self, certificate: x509.Certificate, identity: str, kind: str) -> None:
        records = self._load_issued()
        records.append(
            IssuedCertificate(
                certificate.serial_number, identity, kind, certificate.not_valid_after_utc
            )
        )
        self._save_issued(records)

    def _load_document(self) -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads((self.folder / ISSUED).read_bytes())
        except FileNotFoundError:
            return {"certificates": []}
        return document

    def _load_issued(self) -> list[IssuedCertificate]:
        return [IssuedCertificate.of_json(r) for r in self._load_document()["certificates"]]

    def _load_meta(self) -> dict[str, Any]:
        return {k: v for k, v in self._load_document().items() if k != "certificates"}

    def _save_issued(self, records: list[IssuedCertificate]) -> None:
        document = {**self._load_meta(), "certificates": [r.as_json() for r in records]}
        _write_private(self.folder / ISSUED, json.dumps(document, indent=1).encode())

    def _save_meta(self, meta: dict[str, Any]) -> None:
        document = {**meta, "certificates": self._load_document()["certificates"]}
        _write_private(self.folder / ISSUED, json.dumps(document, indent=1).encode())


def _named(revoked: Sequence[IssuedCertificate]) -> bytes:
    """The text before the CRL's PEM block: whose each revoked serial is.

    A CRL carries serials only, and Mosquitto checks it only when a connection is made; the
    broker plugin reads these lines (for serials the signed CRL lists) to disconnect the device
    of a newly revoked certificate. Text before a PEM block is allowed (RFC 7468, section 2) and
    OpenSSL, Mosquitto and cryptography skip it.
    """
    lines = ["lantaarn: the identity of each revoked certificate (revoked SERIAL-IN-HEX IDENTITY)"]
    lines += [f"revoked {r.serial:X} {r.identity}" for r in revoked]
    return "".join(f"{line}\n" for line in lines).encode()


def revoke_retired(folder: Path | None, identity: str) -> Path | None:
    """On retiring a device: revoke its certificates and rewrite the CRL; the CRL's path.

    A no-op (None) when the deployment keeps no authority in `folder`. The broker sees the new
    CRL only once it reloads it (see the README's Security section).
    """
    if folder is None or not (folder / CA_KEY).exists():
        return None
    authority = Authority.load(folder)
    authority.revoke(identity)
    return authority.write_crl()


# -- checks of a signing request -------------------------------------------------------------------


def _parse_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        if b"-----BEGIN" in csr_pem:
            return x509.load_pem_x509_csr(csr_pem)
        return x509.load_der_x509_csr(csr_pem)
    except ValueError:
        raise InvalidCsr("not a PEM or DER certificate signing request") from None


def _checked_key(csr: x509.CertificateSigningRequest, identity: str) -> DeviceKey:
    """The request's public key, once the request passed every check."""
    try:
        public_key = csr.public_key()
    except ValueError:
        raise InvalidCsr("its public key cannot be read") from None
    if isinstance(public_key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= public_key.key_size <= MAX_RSA_BITS:
            raise InvalidCsr(
                f"an RSA key of {public_key.key_size} bits; "
                f"use {MIN_RSA_BITS} to {MAX_RSA_BITS} bits (or EC P-256)"
            )
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, _CURVES):
            raise InvalidCsr(f"curve {public_key.curve.name}; use P-256, P-384 or P-521")
    elif not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise InvalidCsr(f"a {type(public_key).__name__}; use EC P-256, RSA or Ed25519")
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError):
        valid = False
    if not valid:
        raise InvalidCsr("its signature does not match its key")
    for attribute in csr.subject:
        if attribute.oid == NameOID.COMMON_NAME and attribute.value != identity:
            raise InvalidCsr(f"it asks for common name {attribute.value!r}, not {identity!r}")
    try:
        extensions = csr.extensions
    except ValueError:
        raise InvalidCsr("its extensions cannot be read") from None
    for extension in extensions:
        if isinstance(extension.value, x509.BasicConstraints) and extension.value.ca:
            raise InvalidCsr("it asks to be a certificate authority")
        if isinstance(extension.value, x509.SubjectAlternativeName | x509.IssuerAlternativeName):
            raise InvalidCsr("it asks for alternative names; a device has only its identity")
        if isinstance(extension.value, x509.NameConstraints):
            raise InvalidCsr("it asks for name constraints, which only an authority has")
    return public_key


# -- small helpers ---------------------------------------------------------------------------------


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _dns_name(name: str) -> str:
    if _DNS_NAME.fullmatch(name) is None:
        raise PkiError(f"{name!r} is not a DNS name (ASCII letters, digits, hyphens, dots)")
    return name.lower()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _private_folder(folder: Path) -> None:
    """Create `folder` if needed and make it owner-only (0700), whatever the umask."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock (across processes) for one change."""
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _owned_like_folder(fd, folder)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _owned_like_folder(fd: int, folder: Path) -> None:
    """Give a new file the folder's owner when root writes it.

    The folder belongs to whoever runs the services (the API signs, the broker reads the CRL and
    its key); an operator's `sudo lantaarn pki revoke` must not leave files only root can read.
    """
    if os.geteuid() == 0:
        owner = folder.stat()
        os.fchown(fd, owner.st_uid, owner.st_gid)


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` (mode 0600) so that readers see the old file or the new, never half of one."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, 0o600)  # whatever the umask
        _owned_like_folder(fd, path.parent)
        file.write(data)
        file.flush()
        os.fsync(fd)
    try:
        temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
