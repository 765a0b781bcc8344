"""The certificate authority (broker/pki.py) and `lantaarn pki`, with real keys and OpenSSL."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.pki import (
    Authority,
    AuthorityExists,
    AuthorityMissing,
    InvalidCsr,
    InvalidIdentity,
    PkiError,
    device_identity,
    revoke_retired,
)
from devices import Device, Registry, Tenant
from lantaarn.cli import main
from tests.conftest import require_program

A = "GM0363/gm0363-lp-00001"
B = "GM0363/gm0363-lp-00002"


def device_csr(
    common_name: str | None = None,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    extensions: list[x509.ExtensionType] | None = None,
) -> tuple[bytes, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """A CSR as a device makes one: its own key, perhaps its name; (CSR PEM, key)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    for extension in extensions or ():
        builder = builder.add_extension(extension, critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    """A new authority in a fresh folder."""
    return Authority.create(tmp_path / "pki", name="test CA")


def openssl_verify(authority: Authority, cert: Path, *, crl: bool = False) -> str:
    """OpenSSL's verdict on `cert` (its output; the exit code is in it)."""
    require_program("openssl", "openssl")
    argv = ["openssl", "verify", "-CAfile", str(authority.ca_file)]
    if crl:
        argv += ["-crl_check", "-CRLfile", str(authority.crl_file)]
    done = subprocess.run([*argv, str(cert)], capture_output=True, text=True, check=False)
    return f"{done.returncode} {done.stdout}{done.stderr}"


# -- the authority -------------------------------------------------------------------------------


def test_the_authority_is_a_ca_for_ten_years_and_keeps_its_folder_private(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "pki"
    authority = Authority.create(folder, name="Lantaarn test CA")
    ca = authority.certificate
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=3650)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("ca.crt", "ca.key", "crl.pem", "issued.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    # Nothing half-written is left behind.
    assert not list(folder.glob("*.tmp"))
    loaded = Authority.load(folder)
    assert loaded.certificate == ca
    with pytest.raises(AuthorityExists):
        Authority.create(folder)
    with pytest.raises(AuthorityMissing):
        Authority.load(tmp_path / "elsewhere")
    (folder / "ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n")
    with pytest.raises(PkiError, match="cannot be read"):
        Authority.load(folder)


def test_a_loose_folder_is_made_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    Authority.create(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_files_written_by_root_belong_to_the_folders_owner(authority: Authority) -> None:
    # The services own the folder; an operator's `sudo lantaarn pki revoke` must not leave the
    # CRL readable by root alone (the broker would refuse to reload, the API could not sign).
    nobody = 65534
    os.chown(authority.folder, nobody, nobody)
    authority.issue_device(A)
    authority.revoke(A)
    authority.write_crl()
    for name in ("crl.pem", "issued.json"):
        owner = (authority.folder / name).stat()
        assert (owner.st_uid, owner.st_gid) == (nobody, nobody), name
        assert stat.S_IMODE(owner.st_mode) == 0o600


def test_the_server_certificate_names_ipv6_first_and_is_for_servers(authority: Authority) -> None:
    cert_path, key_path = authority.issue_server(["broker.example.org"], ["192.0.2.1", "::1"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == ["broker.example.org", "::1", "192.0.2.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert timedelta(days=360) < cert.not_valid_after_utc - datetime.now(UTC) < timedelta(400)
    assert openssl_verify(authority, cert_path).startswith("0 ")
    long_name = ".".join(["a" * 40] * 3)  # a valid DNS name longer than a common name may be
    long_cert, _ = authority.issue_server([long_name], [])
    alt = x509.load_pem_x509_certificate(long_cert.read_bytes()).extensions
    names = alt.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [long_name]
    with pytest.raises(PkiError):
        authority.issue_server([], [])
    with pytest.raises(PkiError):
        authority.issue_server(["bad name!"], [])
    with pytest.raises(PkiError):
        authority.issue_server([], ["not-an-address"])


def test_a_device_certificate_carries_only_what_the_authority_decides(
    authority: Authority, tmp_path: Path
) -> None:
    csr, key = device_csr(A)
    pem = authority.sign_device_csr(csr, A)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == f"CN={A}"
    assert cert.issuer == authority.certificate.subject
    assert cert.public_key() == key.public_key()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert timedelta(days=360) < cert.not_valid_after_utc - datetime.now(UTC) < timedelta(400)
    path = tmp_path / "a.crt"
    path.write_bytes(pem)
    assert openssl_verify(authority, path).startswith("0 ")
    # A CSR with no subject at all is fine: the authority names the device.
    anonymous, _ = device_csr(None)
    assert x509.load_pem_x509_certificate(authority.sign_device_csr(anonymous, A)).subject == (
        cert.subject
    )
    # A CSR in DER is accepted as well.
    der = x509.load_pem_x509_csr(anonymous).public_bytes(serialization.Encoding.DER)
    assert authority.sign_device_csr(der, A)
    records = json.loads((authority.folder / "issued.json").read_text())["certificates"]
    assert [r["identity"] for r in records] == [A, A, A]
    assert {r["serial"] for r in records} == {
        f"{c.serial:x}" for c in authority.issued() if c.identity == A
    }
    assert all(r["revoked_at"] is None and r["not_after"].endswith("Z") for r in records)


def test_extensions_asked_for_in_a_csr_are_never_copied(authority: Authority) -> None:
    usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    csr, _ = device_csr(A, extensions=[usage, x509.OCSPNoCheck()])
    cert = x509.load_pem_x509_certificate(authority.sign_device_csr(csr, A))
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.OCSPNoCheck)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: device_csr(B)[0], "common name"),
        (
            lambda: device_csr(A, extensions=[x509.BasicConstraints(ca=True, path_length=None)])[0],
            "certificate authority",
        ),
        (
            lambda: device_csr(
                A, extensions=[x509.SubjectAlternativeName([x509.DNSName("broker.example.org")])]
            )[0],
            "alternative names",
        ),
        (
            lambda: device_csr(A, key=rsa.generate_private_key(65537, 1024))[0],
            "RSA key of 1024 bits",
        ),
        (
            lambda: device_csr(A, key=ec.generate_private_key(ec.SECP256K1()))[0],
            "curve secp256k1",
        ),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "not a PEM or DER"),
        (lambda: b"\x00" * 40, "not a PEM or DER"),
        (lambda: _tampered(device_csr(A)[0]), "signature"),
    ],
    ids=["other-name", "ca", "san", "rsa-1024", "secp256k1", "bad-pem", "garbage", "tampered"],
)
def test_a_bad_csr_is_refused_with_its_reason(
    authority: Authority, make: object, reason: str
) -> None:
    assert callable(make)
    with pytest.raises(InvalidCsr, match=reason):
        authority.sign_device_csr(make(), A)
    assert authority.issued() == []


def _tampered(csr_pem: bytes) -> bytes:
    """The CSR with another device's key put in, the signature left as it was."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    original = x509.load_pem_x509_csr(csr_pem).public_key()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = original.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    swapped = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    start = der.index(spki)
    der[start : start + len(spki)] = swapped
    return bytes(der)


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["rsa-2048", "p-384", "ed25519"],
)
def test_other_sound_keys_are_accepted(authority: Authority, make_key: Any) -> None:
    key = make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)
    cert = x509.load_pem_x509_certificate(authority.sign_device_csr(csr, A))
    assert cert.public_key() == key.public_key()


@pytest.mark.parametrize(
    "identity",
    ["GM0363", "GM0363/Upper", "GM 0363/lp-1", "GM0363/lp-1/x", "/lp-1", "G" * 32 + "/" + "a" * 40],
)
def test_an_identity_must_follow_the_topic_scheme(authority: Authority, identity: str) -> None:
    csr, _ = device_csr(None)
    with pytest.raises(InvalidIdentity):
        authority.sign_device_csr(csr, identity)
    with pytest.raises(InvalidIdentity):
        authority.issue_device(identity)


def test_revoking_an_identity_revokes_all_its_certificates_and_only_those(
    authority: Authority, tmp_path: Path
) -> None:
    a1, _ = authority.issue_device(A)
    a2, _ = authority.issue_device(A)
    b1, _ = authority.issue_device(B)
    for name, pem in (("a1", a1), ("a2", a2), ("b1", b1)):
        (tmp_path / f"{name}.crt").write_bytes(pem)
        assert openssl_verify(authority, tmp_path / f"{name}.crt", crl=True).startswith("0 ")
    authority.revoke(A)
    authority.revoke(A)  # again changes nothing
    crl_path = authority.write_crl()
    assert stat.S_IMODE(crl_path.stat().st_mode) == 0o600
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert crl.is_signature_valid(authority.certificate.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None
    assert crl.next_update_utc > datetime.now(UTC) + timedelta(days=7)
    serials = {r.serial_number for r in crl}
    assert serials == {x509.load_pem_x509_certificate(p).serial_number for p in (a1, a2)}
    assert "revoked" in openssl_verify(authority, tmp_path / "a1.crt", crl=True)
    assert "revoked" in openssl_verify(authority, tmp_path / "a2.crt", crl=True)
    assert openssl_verify(authority, tmp_path / "b1.crt", crl=True).startswith("0 ")
    # The CRL number goes up with every CRL written.
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    again = x509.load_pem_x509_crl(authority.write_crl([B]).read_bytes())
    assert again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number
    assert len(list(again)) == 3
    assert all(c.revoked_at is not None for c in authority.issued())


def test_the_retire_hook_revokes_and_rewrites_the_crl_and_needs_no_authority(
    authority: Authority, tmp_path: Path
) -> None:
    cert, _ = authority.issue_device(A)
    assert revoke_retired(tmp_path / "none", A) is None
    assert revoke_retired(None, A) is None
    assert revoke_retired(authority.folder, A) == authority.crl_file
    crl = x509.load_pem_x509_crl(authority.crl_file.read_bytes())
    assert [r.serial_number for r in crl] == [x509.load_pem_x509_certificate(cert).serial_number]


def test_an_expired_certificate_can_be_issued_for_tests(
    authority: Authority, tmp_path: Path
) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    pem, _ = authority.issue_device(A, not_after=past)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.not_valid_after_utc < datetime.now(UTC)
    assert cert.not_valid_before_utc < cert.not_valid_after_utc
    (tmp_path / "old.crt").write_bytes(pem)
    assert "expired" in openssl_verify(authority, tmp_path / "old.crt")


def test_device_identity_checks_both_parts() -> None:
    assert device_identity("GM0363", "gm0363-lp-00001") == A
    with pytest.raises(InvalidIdentity):
        device_identity("GM/0363", "lp-1")
    with pytest.raises(InvalidIdentity):
        device_identity("GM0363", "LP-1")


# -- the command line ----------------------------------------------------------------------------


def _lamppost(device_id: str, tenant: str = "GM0363") -> Device:
    return Device(
        device_id=device_id,
        tenant=tenant,
        kind="lamppost",
        name=device_id,
        latitude=52.37,
        longitude=4.9,
    )


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder with a registry of two lampposts of Amsterdam, one retired; its path."""
    data = tmp_path / "data"
    monkeypatch.setenv("LANTAARN_DATA_DIR", str(data))
    monkeypatch.delenv("LANTAARN_REGISTRY_URL", raising=False)
    data.mkdir()
    with Registry(f"sqlite:///{data / 'registry.sqlite3'}") as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam", ("2001:db8:363::/48",)))
        registry.add_device(_lamppost("gm0363-lp-00001"))
        registry.add_device(_lamppost("gm0363-lp-00002"))
        registry.add_device(_lamppost("gm0363-lp-00003"))
        registry.retire("gm0363-lp-00003")
    return data


def test_the_command_signs_a_devices_csr_and_revokes_it(
    deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = deployment / "pki"
    assert main(["pki", "sign", "--device", "gm0363-lp-00001", "--csr", "x"]) == 1
    assert "lantaarn pki init" in capsys.readouterr().err
    assert main(["pki", "init", "--name", "Amsterdam test CA"]) == 0
    assert str(folder) in capsys.readouterr().out
    assert main(["pki", "init"]) == 1
    assert "already holds" in capsys.readouterr().err

    assert main(["pki", "server", "--dns", "localhost", "--ip", "127.0.0.1", "::1"]) == 0
    assert (folder / "server.crt").exists()
    capsys.readouterr()

    csr, key = device_csr(None)
    (tmp_path / "a.csr").write_bytes(csr)
    out = tmp_path / "a.crt"
    assert main(["pki", "sign", "--device", "gm0363-lp-00001", "--csr", str(tmp_path / "a.csr"),
                 "--out", str(out)]) == 0  # fmt: skip
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={A}"
    assert cert.public_key() == key.public_key()
    capsys.readouterr()
    assert (
        main(["pki", "sign", "--device", "gm0363-lp-00002", "--csr", str(tmp_path / "a.csr")]) == 0
    )
    assert "BEGIN CERTIFICATE" in capsys.readouterr().out

    # Retired and unknown devices get nothing, nor does a bad CSR.
    for device in ("gm0363-lp-00003", "gm0363-lp-09999"):
        assert main(["pki", "sign", "--device", device, "--csr", str(tmp_path / "a.csr")]) == 1
        assert capsys.readouterr().err
    (tmp_path / "bad.csr").write_bytes(b"nonsense")
    assert (
        main(["pki", "sign", "--device", "gm0363-lp-00001", "--csr", str(tmp_path / "bad.csr")])
        == 1
    )
    assert "refused" in capsys.readouterr().err

    assert main(["pki", "revoke", "--device", "gm0363-lp-00001"]) == 0
    capsys.readouterr()
    crl = x509.load_pem_x509_crl((folder / "crl.pem").read_bytes())
    assert [r.serial_number for r in crl] == [cert.serial_number]

    assert main(["pki", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{cert.serial_number:x}" in listing
    assert "server:localhost" in listing
    assert main(["pki", "crl"]) == 0
    assert "1 revoked" in capsys.readouterr().out


def test_pki_crl_catches_up_devices_retired_without_the_hook(
    deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = Authority.create(deployment / "pki")
    cert, _ = authority.issue_device(A)
    with Registry(f"sqlite:///{deployment / 'registry.sqlite3'}") as registry:
        registry.retire("gm0363-lp-00001")
    assert main(["pki", "crl"]) == 0
    crl = x509.load_pem_x509_crl(authority.crl_file.read_bytes())
    assert [r.serial_number for r in crl] == [x509.load_pem_x509_certificate(cert).serial_number]


def test_devices_retire_revokes_the_devices_certificates(
    deployment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = Authority.create(deployment / "pki")
    cert, _ = authority.issue_device(A)
    assert main(["devices", "retire", "gm0363-lp-00001"]) == 0
    assert "revoked" in capsys.readouterr().out
    crl = x509.load_pem_x509_crl(authority.crl_file.read_bytes())
    assert [r.serial_number for r in crl] == [x509.load_pem_x509_certificate(cert).serial_number]
