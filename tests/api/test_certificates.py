"""POST /v1/devices/{deviceId}/certificate on a live API: a device's CSR in, its certificate out."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.pki import Authority
from devices import Device
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, World, seed_world, serving
from tests.broker.test_pki import device_csr

PROBLEM = "application/problem+json"
PEM = {"Content-Type": "application/x-pem-file"}


@dataclasses.dataclass
class Served:
    """The live API, its world and the authority it signs with."""

    url: str
    world: World
    authority: Authority

    def headers(self, use: str, content_type: str = "application/x-pem-file") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.keys[use]}", "Content-Type": content_type}

    def device(self, tenant: str, index: int = 0) -> Device:
        return self.world.of_tenant(tenant)[index]

    def post(self, device_id: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/devices/{device_id}/certificate", content=body,
                          headers=headers)  # fmt: skip


@pytest.fixture(scope="module")
def served(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API over a registry of two tenants, with a certificate authority."""
    folder = tmp_path_factory.mktemp("certificates")
    world = seed_world(influx, folder)
    authority = Authority.create(folder / "pki", name="API test CA")
    world.config = dataclasses.replace(world.config, pki_dir=authority.folder)
    with serving(world.config) as url:
        yield Served(url, world, authority)


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    return body


def test_an_operator_gets_the_certificate_of_a_devices_csr(served: Served) -> None:
    device = served.device(TENANT_A)
    csr, key = device_csr(None)
    response = served.post(device.device_id, csr, served.headers("operator_a"))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/x-pem-file"
    cert = x509.load_pem_x509_certificate(response.content)
    assert cert.subject.rfc4514_string() == f"CN={device.tenant}/{device.device_id}"
    assert cert.issuer == served.authority.certificate.subject
    assert cert.public_key() == key.public_key()
    assert cert.serial_number in {c.serial for c in served.authority.issued()}


@pytest.mark.parametrize("form", ["pkcs10-pem", "pkcs10-der", "json"])
def test_every_documented_body_form_is_accepted(served: Served, form: str) -> None:
    device = served.device(TENANT_A, 1)
    csr, key = device_csr(f"{device.tenant}/{device.device_id}")
    if form == "pkcs10-pem":
        body, content_type = csr, "application/pkcs10"
    elif form == "pkcs10-der":
        der = x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER)
        body, content_type = der, "application/pkcs10"
    else:
        body, content_type = (
            httpx.Request("POST", "/", json={"csr": csr.decode()}).read(),
            ("application/json; charset=utf-8"),
        )
    response = served.post(device.device_id, body, served.headers("admin", content_type))
    assert response.status_code == 201, response.text
    assert x509.load_pem_x509_certificate(response.content).public_key() == key.public_key()


def test_only_operators_of_the_devices_tenant_may_ask(served: Served) -> None:
    csr, _ = device_csr(None)
    ours, theirs = served.device(TENANT_A), served.device(TENANT_B)
    assert_problem(served.post(ours.device_id, csr, PEM), 401)
    assert_problem(served.post(ours.device_id, csr, served.headers("viewer_a")), 403)
    # Another tenant's device is as absent as a device that does not exist.
    other = assert_problem(served.post(theirs.device_id, csr, served.headers("operator_a")), 404)
    missing = assert_problem(served.post("gm0000-none", csr, served.headers("operator_a")), 404)
    assert other["title"] == missing["title"]
    assert theirs.device_id in str(other["detail"])
    before = len(served.authority.issued())
    assert_problem(served.post(theirs.device_id, csr, served.headers("revoked")), 401)
    assert len(served.authority.issued()) == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not a csr", "not a PEM or DER"),
        (lambda: device_csr("GM0344/someone-else")[0], "common name"),
        (lambda: device_csr(None, key=rsa.generate_private_key(65537, 1024))[0], "1024 bits"),
        (
            lambda: device_csr(None, extensions=[x509.BasicConstraints(ca=True, path_length=0)])[0],
            "certificate authority",
        ),
    ],
    ids=["garbage", "other-name", "weak-rsa", "ca"],
)
def test_a_bad_csr_is_a_400_problem(served: Served, body: object, reason: str) -> None:
    content = body() if callable(body) else body
    assert isinstance(content, bytes)
    device = served.device(TENANT_A)
    problem = assert_problem(served.post(device.device_id, content, served.headers("admin")), 400)
    params = problem["invalidParams"]
    assert isinstance(params, list)
    assert params[0]["name"] == "csr"
    assert reason in params[0]["reason"]


def test_bodies_of_the_wrong_form_or_size_are_refused(served: Served) -> None:
    device = served.device(TENANT_A)
    csr, _ = device_csr(None)
    assert_problem(served.post(device.device_id, csr, served.headers("admin", "text/plain")), 415)
    json = served.headers("admin", "application/json")
    for body in (b'{"pem": "x"}', b"[1]", b"{", b'{"csr": 5}'):
        assert_problem(served.post(device.device_id, body, json), 400)
    huge = b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 1_000_000
    assert_problem(served.post(device.device_id, huge, served.headers("admin")), 413)


def test_retiring_a_device_revokes_its_certificates(served: Served) -> None:
    device = served.device(TENANT_A, 2)
    csr, _ = device_csr(None)
    signed = served.post(device.device_id, csr, served.headers("operator_a"))
    assert signed.status_code == 201, signed.text
    serial = x509.load_pem_x509_certificate(signed.content).serial_number
    retired = httpx.post(
        f"{served.url}/v1/devices/{device.device_id}/retire",
        headers={"Authorization": f"Bearer {served.world.keys['operator_a']}"},
    )
    assert retired.status_code == 200, retired.text
    crl = x509.load_pem_x509_crl(served.authority.crl_file.read_bytes())
    assert serial in {r.serial_number for r in crl}
    # A retired device gets no new certificate.
    problem = assert_problem(served.post(device.device_id, csr, served.headers("operator_a")), 400)
    assert "retired" in str(problem["detail"])


def test_without_an_authority_the_api_says_so(served: Served, tmp_path: Path) -> None:
    config = dataclasses.replace(served.world.config, pki_dir=tmp_path / "no-pki")
    csr, _ = device_csr(None)
    with serving(config) as url:
        response = httpx.post(
            f"{url}/v1/devices/{served.device(TENANT_A).device_id}/certificate",
            content=csr,
            headers=served.headers("admin"),
        )
    assert_problem(response, 501)
