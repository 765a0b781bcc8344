"""The API over HTTPS, behind a proxy, and links that never echo the Host header a client sent."""

from __future__ import annotations

import dataclasses
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lantaarn.localstack import Influx
from lantaarn.serve import bind_free
from tests.api.liveapi import TENANT_A, World, seed_world, serving
from tests.conftest import require_program

FORGED = "evil.example"
PUBLIC = "https://lantaarn.gemeente.example"


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("transport"))


def admin(world: World, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.keys['admin']}", **extra}


def _device(device_id: str) -> dict[str, object]:
    return {
        "deviceId": device_id,
        "tenant": TENANT_A,
        "kind": "lamppost",
        "name": "new",
        "location": {"type": "Point", "coordinates": [4.9, 52.37]},
        "owner": "test",
        "observationGoal": "test",
        "legalGround": "test",
        "personalData": False,
    }


# -- Link and Location -----------------------------------------------------------------------------


def test_a_forged_host_appears_in_no_link_or_location(world: World) -> None:
    with serving(world.config) as url:
        page = httpx.get(f"{url}/v1/devices?limit=1", headers=admin(world, Host=FORGED))
        assert page.status_code == 200
        assert FORGED not in page.headers["Link"]
        assert page.headers["Link"].startswith("</v1/devices?")
        # A client resolves the path against the URL it asked: the next page is reachable.
        target = page.headers["Link"][1 : page.headers["Link"].index(">")]
        assert httpx.get(url + target, headers=admin(world)).status_code == 200
        created = httpx.post(
            f"{url}/v1/devices", json=_device("gm0363-lp-host-1"), headers=admin(world, Host=FORGED)
        )
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == "/v1/devices/gm0363-lp-host-1"


def test_a_public_url_makes_links_absolute_under_it(world: World) -> None:
    config = dataclasses.replace(world.config, public_url=PUBLIC)
    with serving(config) as url:
        page = httpx.get(f"{url}/v1/devices?limit=1", headers=admin(world, Host=FORGED))
        assert page.headers["Link"].startswith(f"<{PUBLIC}/v1/devices?")
        created = httpx.post(
            f"{url}/v1/devices", json=_device("gm0363-lp-host-2"), headers=admin(world, Host=FORGED)
        )
        assert created.headers["Location"] == f"{PUBLIC}/v1/devices/gm0363-lp-host-2"


# -- HTTPS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    require_program("openssl", "openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "api.crt", folder / "api.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_api(world: World, certificate: tuple[Path, Path]) -> Iterator[str]:
    """The API serving HTTPS with the certificate."""
    cert, key = certificate
    with serving(world.config, certfile=cert, keyfile=key) as url:
        yield url


def test_https_with_a_certificate(
    https_api: str, world: World, certificate: tuple[Path, Path]
) -> None:
    assert https_api.startswith("https://")
    trust = ssl.create_default_context(cafile=certificate[0])
    answer = httpx.get(f"{https_api}/v1/latest", headers=admin(world), verify=trust)
    assert answer.status_code == 200
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    with pytest.raises(httpx.TransportError):
        httpx.get(https_api.replace("https://", "http://") + "/v1/health/live")


def test_the_session_cookie_is_secure_over_https(
    https_api: str, world: World, certificate: tuple[Path, Path]
) -> None:
    trust = ssl.create_default_context(cafile=certificate[0])
    answer = httpx.post(f"{https_api}/v1/sessions", headers=admin(world), verify=trust)
    assert answer.status_code == 201
    assert "; secure" in answer.headers["set-cookie"].lower()


# -- forwarded headers -----------------------------------------------------------------------------

WRONG = {"Authorization": "Bearer ltn_0123456789abcdef_" + "D" * 43}


def test_forwarded_headers_of_anyone_but_a_trusted_proxy_are_ignored(world: World) -> None:
    config = dataclasses.replace(world.config, auth_failure_burst=3)
    with serving(config) as url:
        # A guesser cannot pose as many clients.
        statuses = [
            httpx.get(
                f"{url}/v1/latest", headers={**WRONG, "X-Forwarded-For": f"203.0.113.{n}"}
            ).status_code
            for n in range(5)
        ]
        assert statuses == [401, 401, 401, 429, 429]


def test_forwarded_headers_of_a_trusted_proxy_are_believed(world: World) -> None:
    config = dataclasses.replace(world.config, auth_failure_burst=3)
    with serving(config, trusted_proxies=["127.0.0.1"]) as url:
        guesser = {"X-Forwarded-For": "203.0.113.5"}
        statuses = [
            httpx.get(f"{url}/v1/latest", headers={**WRONG, **guesser}).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
        # The holder of a key behind the same proxy is another client: not locked out.
        holder = admin(world, **{"X-Forwarded-For": "203.0.113.6", "X-Forwarded-Proto": "https"})
        assert httpx.get(f"{url}/v1/latest", headers=holder).status_code == 200
        # The proxy says the browser spoke HTTPS: the cookie is Secure.
        signed_in = httpx.post(f"{url}/v1/sessions", headers=holder)
        assert signed_in.status_code == 201
        assert "; secure" in signed_in.headers["set-cookie"].lower()


def test_a_forwarded_proto_from_an_untrusted_client_does_not_make_cookies_secure(
    world: World,
) -> None:
    with serving(world.config) as url:
        signed_in = httpx.post(
            f"{url}/v1/sessions", headers=admin(world, **{"X-Forwarded-Proto": "https"})
        )
        assert signed_in.status_code == 201
        assert "secure" not in signed_in.headers["set-cookie"].lower()


def test_the_command_serves_https_with_a_certificate(
    world: World, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    sockets, port = bind_free(["127.0.0.1"])
    for sock in sockets:
        sock.close()  # the command binds the port itself
    env = {
        **os.environ,
        "LANTAARN_DATA_DIR": str(tmp_path),
        "LANTAARN_REGISTRY_URL": world.config.registry_url,
        "LANTAARN_INFLUX__URL": world.config.influx.url,
        "LANTAARN_INFLUX__DATABASE": world.config.influx.database,
    }
    command = [sys.executable, "-m", "lantaarn", "api", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--certfile", str(cert), "--keyfile", str(key)]
    trust = ssl.create_default_context(cafile=cert)
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as api:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    live = httpx.get(f"https://127.0.0.1:{port}/v1/health/live", verify=trust)
                    break
                except httpx.TransportError:
                    assert api.poll() is None, api.stderr.read() if api.stderr else ""
                    assert time.monotonic() < deadline, "the API did not come up"
                    time.sleep(0.1)
            assert live.status_code == 200
            answer = httpx.get(
                f"https://127.0.0.1:{port}/v1/latest", headers=admin(world), verify=trust
            )
            assert answer.status_code == 200
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(15)
