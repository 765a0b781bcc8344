"""TLS and certificates at the broker: who gets through the device listeners, and guessing."""

from __future__ import annotations

import pwd
import secrets
import socket
import ssl
import time
import warnings
from pathlib import Path

import pytest
from cryptography import x509

from broker.config import BrokerTls
from broker.passwords import write_broker_config
from broker.pki import Authority
from devices import Device, Registry, Tenant
from devices.provisioning import issue_credentials
from devices.topics import topic
from lantaarn.cli import main
from lantaarn.localstack import private_mosquitto
from tests.broker.peers import Listener, connect
from tests.broker.testca import ThrowawayAuthority
from tests.conftest import SecuredBroker


def test_certificates_from_another_ca_expired_or_absent_are_refused(
    secured: SecuredBroker, tmp_path: Path
) -> None:
    x509 = secured.listeners["x509"]
    stranger = ThrowawayAuthority(tmp_path / "other-ca").issue_device(secured.username("a-1"))
    assert connect(x509, None, None, cert=stranger).refused
    expired = secured.authority.issue_device(secured.username("a-1"), valid_days=-1)
    assert connect(x509, None, None, cert=expired).refused
    assert connect(x509, None, None).refused  # no certificate at all
    # A password alone is no way in on the certificate listener.
    credentials = secured.logins["a-1"]
    assert connect(x509, credentials.username, credentials.password).refused
    secured.device(x509, "a-1").close()


def test_a_certificate_of_device_a_cannot_publish_as_b(secured: SecuredBroker) -> None:
    watcher = connect(secured.service_listener, secured.ingest_login, secured.ingest_password)
    watcher.subscribe("lantaarn/v1/+/+/telemetry")
    # a-1's certificate, with b-1's login as client id and username: the certificate decides.
    a = connect(
        secured.listeners["x509"],
        secured.username("b-1"),
        secured.logins["b-1"].password,
        cert=secured.certificates["a-1"],
        client_id=secured.username("b-1"),
    )
    assert not a.refused
    a.publish(topic("GM0363", "b-1"), b"forged for b")
    a.publish(topic("GM0363", "a-1"), b"a as itself")
    assert watcher.wait_for(b"a as itself")
    assert b"forged for b" not in watcher.payloads()
    a.close()
    watcher.close()


@pytest.mark.parametrize("name", ["tls", "x509"])
def test_tls_below_1_2_is_refused(secured: SecuredBroker, name: str) -> None:
    listener = secured.listeners[name]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(listener.ca_file))
    # OpenSSL's default security level hides TLS 1.1 from the client: lower it to offer it.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection((listener.host, listener.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        context.wrap_socket(raw, server_hostname="localhost").do_handshake()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        secured.device(listener, "a-1", tls_version=version).close()


def test_plain_mqtt_listens_only_on_loopback(secured: SecuredBroker) -> None:
    config = "\n".join(
        path.read_text() for path in sorted((secured.broker.folder / "conf.d").glob("*.conf"))
    )
    listeners = [line.split() for line in config.splitlines() if line.startswith("listener ")]
    tls_ports = {str(secured.listeners[n].port) for n in ("tls", "x509")}
    plain = [words for words in listeners if words[1] not in tls_ports]
    assert plain, config
    assert all(len(words) == 3 and words[2] in ("::1", "127.0.0.1") for words in plain), plain
    # And the shipped file itself: the plain port on loopback only, devices on every address.
    shipped = (Path(__file__).parents[2] / "deploy/mosquitto/conf.d/lantaarn-auth.conf").read_text()
    assert [
        w for w in (line.split() for line in shipped.splitlines()) if w[:1] == ["listener"]
    ] == [
        ["listener", "${plain_port}", "::1"],
        ["listener", "${plain_port}", "127.0.0.1"],
    ]


def test_failed_logins_from_one_address_are_refused_for_a_while(
    secured_strict: SecuredBroker,
) -> None:
    listener = secured_strict.listeners["tls"]
    username = secured_strict.username("a-1")
    for _ in range(secured_strict.broker.auth_failures):
        assert connect(listener, username, "guess", client_id=username).refused
    # The right password from that address is now refused too, on every listener.
    right = secured_strict.logins["a-1"].password
    assert connect(listener, username, right, client_id=username).refused
    plain = secured_strict.listeners["plain"]
    assert connect(
        Listener("plain", "::1", plain.port), username, right, client_id=username
    ).refused
    # Another address is not affected.
    assert not connect(plain, username, right, client_id=username).refused


def test_a_revoked_certificate_is_refused_after_the_broker_reloads(
    secured: SecuredBroker,
) -> None:
    x509 = secured.listeners["x509"]
    secured.device(x509, "a-1").close()
    secured.authority.revoke(secured.username("a-1"))
    secured.authority.write_crl()
    secured.broker.reload()  # Mosquitto 2.0.11 re-reads its crlfile on SIGHUP
    # The broker handles its signal asynchronously: give it a few tries.
    for _ in range(30):
        attempt = connect(x509, None, None, cert=secured.certificates["a-1"])
        if attempt.refused:
            break
        attempt.close()
        time.sleep(0.1)
    assert attempt.refused, "a revoked certificate still connects"
    secured.device(x509, "b-1").close()


def test_the_broker_drops_to_its_own_user(secured_dropped: SecuredBroker) -> None:
    process = secured_dropped.broker.service.process
    assert process is not None
    owner = Path(f"/proc/{process.pid}/status").read_text()
    uid = next(line.split()[1] for line in owner.splitlines() if line.startswith("Uid:"))
    assert pwd.getpwuid(int(uid)).pw_name == "mosquitto"
    secured_dropped.device(secured_dropped.listeners["tls"], "a-1").close()


def test_a_retired_device_is_cut_off_on_every_listener(secured: SecuredBroker) -> None:
    on_password = secured.device(secured.listeners["tls"], "a-1")
    on_certificate = secured.device(
        secured.listeners["x509"], "b-1", client_id=secured.username("b-1")
    )
    bystander = secured.device(secured.service_listener, "c-1")
    secured.registry.retire("a-1")
    secured.registry.retire("b-1")
    assert secured.broker.password_file is not None
    assert secured.broker.acl_file is not None
    write_broker_config(
        secured.registry, secured.broker.password_file, secured.broker.acl_file, secured.services
    )
    secured.broker.reload()
    assert on_password.disconnected.wait(5), "a retired device kept its connection"
    assert on_certificate.disconnected.wait(5), "a retired device kept its certificate session"
    assert not bystander.disconnected.wait(0.5)
    bystander.close()


def test_revoking_a_certificate_cuts_its_open_connection_and_refuses_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a deployment revokes: `lantaarn pki revoke`, then `lantaarn broker-config --stage-tls`
    (what the path unit watching the CRL runs) and the broker's reload."""
    data = tmp_path / "data"
    monkeypatch.setenv("LANTAARN_DATA_DIR", str(data))
    monkeypatch.delenv("LANTAARN_REGISTRY_URL", raising=False)
    data.mkdir()
    ids = ("gm0363-lp-00001", "gm0363-lp-00002")
    with Registry(f"sqlite:///{data / 'registry.sqlite3'}") as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam", ("2001:db8:363::/48",)))
        for device_id in ids:
            device = Device(device_id, "GM0363", "lamppost", device_id, 52.37, 4.9)
            registry.add_device(device, password_hash=issue_credentials(device).password_hash)
    assert main(["pki", "init"]) == 0
    assert main(["pki", "server", "--ip", "127.0.0.1", "::1"]) == 0
    authority = Authority.load(data / "pki")
    certificates = {}
    for device_id in ids:
        # OpenSSL prints this serial with a leading zero ("0F..."), Python's hex without.
        serial = (0x0F << 152) | secrets.randbits(152)
        with monkeypatch.context() as chosen:
            chosen.setattr(x509, "random_serial_number", lambda serial=serial: serial)
            cert, key = authority.issue_device(f"GM0363/{device_id}")
        (tmp_path / f"{device_id}.crt").write_bytes(cert)
        (tmp_path / f"{device_id}.key").write_bytes(key)
        certificates[device_id] = (tmp_path / f"{device_id}.crt", tmp_path / f"{device_id}.key")
    folder = tmp_path / "mosquitto"
    password_file, acl_file, staged = folder / "passwd", folder / "acl", folder / "tls"
    sync = ["broker-config", "--password-file", str(password_file), "--acl-file", str(acl_file)]
    sync += ["--stage-tls", str(staged)]
    assert main(sync) == 0
    tls = BrokerTls(
        staged / "ca.crt",
        staged / "server.crt",
        staged / "server.key",
        staged / "crl.pem",
        device_addresses=("::1", "127.0.0.1"),
    )
    broker = private_mosquitto(folder, password_file=password_file, acl_file=acl_file, tls=tls)
    try:
        assert broker.tls is not None
        assert broker.service.process is not None
        listener = Listener("x509", "127.0.0.1", broker.tls.certificate_port, tls.ca_file)
        doomed, bystander = (
            connect(listener, None, None, client_id=f"GM0363/{d}", cert=certificates[d])
            for d in ids
        )
        assert not doomed.refused
        assert not bystander.refused

        assert main(["pki", "revoke", "--device", ids[0]]) == 0
        assert main([*sync, "--reload-pid", str(broker.service.process.pid)]) == 0
        assert doomed.disconnected.wait(5), "a revoked certificate kept its open connection"
        again = connect(
            listener, None, None, client_id=f"GM0363/{ids[0]}", cert=certificates[ids[0]]
        )
        assert again.refused, "a revoked certificate connects again"
        assert not bystander.disconnected.wait(0.5)
        assert bystander.publish(topic("GM0363", ids[1]), b"{}").is_published()
        bystander.close()
    finally:
        broker.stop()
