"""Dashboard sessions: an API key traded for an HttpOnly cookie, CSRF refused, expiry, sign-out."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api.keys import KeyStore, Role
from api.sessions import COOKIE, PER_KEY, SessionStore
from api.throttle import FailedLogins, TooManyFailures, client_group
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, World, seed_world, serving

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("sessions"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    """The live API."""
    with serving(world.config) as url:
        yield url


def sign_in(api: str, key: str) -> httpx.Client:
    """A client holding only the session cookie (as a browser would), not the key."""
    answer = httpx.post(f"{api}/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.text
    client = httpx.Client(base_url=api)
    client.cookies.set(COOKIE, answer.cookies[COOKIE])
    return client


def test_a_key_opens_a_session_held_in_an_httponly_strict_cookie(api: str, world: World) -> None:
    key = world.keys["viewer_a"]
    answer = httpx.post(f"{api}/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here; see test_transport for HTTPS
    session_id = answer.cookies[COOKIE]
    assert key not in cookie
    assert session_id not in answer.text
    body = answer.json()
    assert body["role"] == "viewer"
    assert body["tenants"] == [TENANT_A]
    assert body["idleTimeoutSeconds"] == 1800
    assert body["maxSeconds"] == 12 * 3600
    assert body["expiresAt"].endswith("Z")
    assert answer.headers["Location"] == "/v1/sessions/current"


def test_the_cookie_alone_reads_what_the_key_may(api: str, world: World) -> None:
    with sign_in(api, world.keys["viewer_a"]) as browser:
        latest = browser.get("/v1/latest")
        assert latest.status_code == 200
        assert {d["tenant"] for d in latest.json()} == {TENANT_A}
        assert browser.get("/v1/sessions/current").json()["role"] == "viewer"


def test_a_session_cannot_open_another(api: str, world: World) -> None:
    with sign_in(api, world.keys["admin"]) as browser:
        assert browser.post("/v1/sessions", headers={"Origin": api}).status_code == 401


def test_changes_by_cookie_need_the_own_origin(api: str, world: World) -> None:
    device = {
        "deviceId": "gm0363-lp-csrf-1",
        "tenant": TENANT_A,
        "kind": "lamppost",
        "name": "csrf",
        "location": {"type": "Point", "coordinates": [4.9, 52.37]},
        "owner": "test",
        "observationGoal": "test",
        "legalGround": "test",
        "personalData": False,
    }
    with sign_in(api, world.keys["operator_a"]) as browser:
        for origin in (None, "https://evil.example", "null"):
            headers = {"Origin": origin} if origin else {}
            refused = browser.post("/v1/devices", json=device, headers=headers)
            assert refused.status_code == 403, origin
            assert refused.headers["content-type"] == PROBLEM
        assert browser.get(f"/v1/devices/{device['deviceId']}").status_code == 404
        made = browser.post("/v1/devices", json=device, headers={"Origin": api})
        assert made.status_code == 201, made.text


def test_signing_out_ends_the_session(api: str, world: World) -> None:
    with sign_in(api, world.keys["viewer_a"]) as browser:
        session_id = browser.cookies[COOKIE]
        assert browser.delete("/v1/sessions/current").status_code == 403  # no Origin: refused
        out = browser.delete("/v1/sessions/current", headers={"Origin": api})
        assert out.status_code == 204
        assert (
            f'{COOKIE}=""' in out.headers["set-cookie"]
            or "max-age=0" in out.headers["set-cookie"].lower()
        )
        # A key-only route: /v1/latest answers a caller without a key with the open data.
        stale = httpx.get(f"{api}/v1/rejections", cookies={COOKIE: session_id})
        assert stale.status_code == 401


def test_revoking_the_key_ends_its_sessions(api: str, world: World) -> None:
    with KeyStore(world.config.registry_url) as keys:
        key, secret = keys.create(Role.VIEWER, [TENANT_A], name="soon revoked")
        with sign_in(api, secret) as browser:
            assert browser.get("/v1/latest").status_code == 200
            keys.revoke(key.key_id)
            assert browser.get("/v1/rejections").status_code == 401
            assert browser.get("/v1/sessions/current").status_code == 401


# -- the stores, with a clock of our own ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_when_idle_and_at_its_absolute_limit() -> None:
    clock = Clock()
    store = SessionStore(idle_s=60, max_s=300, clock=clock)
    session_id, _ = store.open("k1")
    for _ in range(4):  # used every 59 s: alive until the absolute limit
        clock.now += 59
        assert store.find(session_id) is not None
    clock.now += 59 + 10  # 305 s after sign-in
    assert store.find(session_id) is None
    idle_id, _ = store.open("k1")
    clock.now += 61
    assert store.find(idle_id) is None
    assert len(store) == 0


def test_only_the_hash_of_a_session_id_is_kept_and_a_key_has_few_sessions() -> None:
    store = SessionStore(idle_s=60, max_s=300, clock=Clock())
    ids = [store.open("k1")[0] for _ in range(PER_KEY + 3)]
    assert len(store) == PER_KEY
    assert store.find(ids[0]) is None
    assert store.find(ids[-1]) is not None
    assert not any(i in repr(vars(store)) for i in ids)


def test_a_token_bucket_refills_and_only_failures_count() -> None:
    clock = Clock()
    throttle = FailedLogins(burst=3, refill_s=10, clock=clock)
    for _ in range(10):
        throttle.attempt("a")
        throttle.succeeded("a")  # successes give their attempt back
    for _ in range(3):
        throttle.attempt("a")
    with pytest.raises(TooManyFailures) as refused:
        throttle.attempt("a")
    assert refused.value.retry_after_s == 10
    throttle.attempt("b")  # another address is not affected
    clock.now += 10
    throttle.attempt("a")
    with pytest.raises(TooManyFailures):
        throttle.attempt("a")


def test_addresses_count_as_ipv4_or_ipv6_slash_64() -> None:
    assert client_group("192.0.2.7") == "192.0.2.7"
    assert client_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_group("2001:db8:1:2::5") == client_group("2001:db8:1:2:ffff::1")
    assert client_group("2001:db8:1:2::5") == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:3::5") != client_group("2001:db8:1:2::5")
    assert client_group(None) == "unknown"
