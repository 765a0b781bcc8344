"""Requests an attacker would send: huge or endless bodies, deep JSON, forged cursors, key guessing.

Every answer is a problem document, given without reading what the attacker would have us read:
the raw-socket tests send only the head of a request (or part of its body) and expect the answer
anyway. Before the guard the server sat waiting for the rest, so these tests hung until their
socket timeout and failed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from api.config import ApiConfig
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, World, seed_world, serving

PROBLEM = "application/problem+json"
# Long enough for a loaded 2-core machine; an answer that needs the unsent body never comes.
ANSWER_WAIT_S = 20.0
FIFTY_MB = 50 * 1024 * 1024
BODY_CAP = 64 * 1024
IMPORT_CAP = 1024 * 1024
BURST = 5


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices and readings, and keys of every kind."""
    return seed_world(influx, tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def config(world: World) -> ApiConfig:
    """Small caps and a small burst of failed logins, so the tests stay small."""
    return dataclasses.replace(
        world.config,
        max_body_bytes=BODY_CAP,
        max_import_bytes=IMPORT_CAP,
        auth_failure_burst=BURST,
        metrics_token="scrape-token-for-tests-0123456789",
    )


@pytest.fixture(scope="module")
def api(config: ApiConfig) -> Iterator[str]:
    """The API on 127.0.0.1 and ::1 (one port): two client addresses for the rate limit."""
    with serving(config, hosts=("127.0.0.1", "::1")) as url:
        yield url


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    return body


@dataclass
class RawAnswer:
    """What came back on a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, object]:
        assert self.headers.get("content-type") == PROBLEM, self.headers
        document: dict[str, object] = json.loads(self.body)
        assert document["status"] == self.status
        return document


def send_partly(url: str, head: str, body_part: bytes = b"") -> RawAnswer:
    """Send a request head (and maybe part of its body), never the rest; read the answer."""
    address = urlsplit(url)
    assert address.hostname is not None
    assert address.port is not None
    with socket.create_connection((address.hostname, address.port), ANSWER_WAIT_S) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body_part)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            head_bytes, _, rest = received.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except TimeoutError:
            pytest.fail("no answer: the server waited for a body it should not read")
    return RawAnswer(int(lines[0].split()[1]), headers, rest)


def post_head(url: str, path: str, extra: str = "", length: int | None = FIFTY_MB) -> str:
    host = urlsplit(url).netloc
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"POST {path} HTTP/1.1\nHost: {host}\nContent-Type: application/json\n{framing}\n"
    return head + extra


# -- the key before the body; bodies capped per route ----------------------------------------------


def test_a_huge_body_without_a_key_is_refused_before_it_is_read(api: str) -> None:
    answer = send_partly(api, post_head(api, "/v1/devices"))
    assert answer.status == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    answer.problem()


def test_a_huge_body_with_a_wrong_key_is_refused_before_it_is_read(api: str) -> None:
    wrong = "Authorization: Bearer ltn_0123456789abcdef_" + "B" * 43 + "\n"
    answer = send_partly(api, post_head(api, "/v1/device-imports", wrong))
    assert answer.status == 401
    answer.problem()


def test_a_declared_body_over_the_cap_is_413_unread(api: str, world: World) -> None:
    key = f"Authorization: Bearer {world.keys['operator_a']}\n"
    answer = send_partly(api, post_head(api, "/v1/devices", key))
    assert answer.status == 413
    assert f"{BODY_CAP} bytes" in str(answer.problem()["detail"])


def test_a_chunked_body_is_cut_off_at_the_cap(api: str, world: World) -> None:
    key = f"Authorization: Bearer {world.keys['operator_a']}\n"
    chunk = b"x" * 8192
    # One byte more than the cap, in chunks, and no last chunk: the stream never ends by itself.
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(BODY_CAP // 8192))
    chunks += b"1\r\nx\r\n"
    answer = send_partly(api, post_head(api, "/v1/devices", key, length=None), chunks)
    assert answer.status == 413
    assert f"{BODY_CAP} bytes" in str(answer.problem()["detail"])


def test_the_import_route_takes_more_than_a_device_create(api: str, world: World) -> None:
    key = bearer(world.keys["operator_a"])
    # Twice the device cap, under the import cap: a (bad) CSV file is read and judged.
    rows = "deviceId,tenant\n" + "not an id,GM0363\n" * (2 * BODY_CAP // 17)
    answer = httpx.post(
        f"{api}/v1/device-imports", content=rows, headers={**key, "Content-Type": "text/csv"}
    )
    assert_problem(answer, 400)
    too_big = httpx.post(f"{api}/v1/devices", content=rows.encode(), headers=key)
    assert "bytes" in str(assert_problem(too_big, 413)["detail"])
    head = post_head(
        api, "/v1/device-imports", f"Authorization: Bearer {world.keys['operator_a']}\n"
    )
    answer_raw = send_partly(api, head)
    assert answer_raw.status == 413
    assert f"{IMPORT_CAP} bytes" in str(answer_raw.problem()["detail"])


def test_the_api_still_answers_after_the_refusals(api: str) -> None:
    assert httpx.get(f"{api}/v1/health/live").status_code == 200


# -- bad input is 400, never 500 or 502 ------------------------------------------------------------


def test_deeply_nested_geojson_is_400(api: str, world: World) -> None:
    depth = 100_000
    document = '{"type": "FeatureCollection", "features": ' + "[" * depth + "]" * depth + "}"
    answer = httpx.post(
        f"{api}/v1/device-imports",
        content=document,
        headers={**bearer(world.keys["operator_a"]), "Content-Type": "application/geo+json"},
    )
    body = assert_problem(answer, 400)
    assert "nested" in str(body["detail"])


def _cursor(state: dict[str, object]) -> str:
    # json, not orjson: a forger is not limited to 64-bit integers.
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "state"),
    [
        ("readings", {"t": 10**30, "o": "asc"}),
        ("readings", {"t": 2**63, "o": "desc"}),
        ("readings", {"t": -(2**63), "o": "asc"}),
        ("rejections", {"before": 10**30}),
        ("rejections", {"before": -(10**25)}),
    ],
)
def test_a_forged_cursor_with_a_huge_number_is_400(
    api: str, world: World, path: str, state: dict[str, object]
) -> None:
    device_id = world.of_tenant(TENANT_A)[0].device_id
    url = f"{api}/v1/devices/{device_id}/readings" if path == "readings" else f"{api}/v1/rejections"
    answer = httpx.get(url, params={"cursor": _cursor(state)}, headers=bearer(world.keys["admin"]))
    body = assert_problem(answer, 400)
    assert body["invalidParams"] == [
        {"name": "cursor", "in": "query", "reason": body["invalidParams"][0]["reason"]}  # type: ignore[index]
    ]


def _new_device(device_id: str, tenant: str) -> dict[str, object]:
    return {
        "deviceId": device_id,
        "tenant": tenant,
        "kind": "lamppost",
        "name": "taken id",
        "location": {"type": "Point", "coordinates": [4.9, 52.37]},
        "owner": "test",
        "observationGoal": "test",
        "legalGround": "test",
        "personalData": False,
    }


def test_a_taken_id_is_refused_alike_whoever_has_it(api: str, world: World) -> None:
    key = bearer(world.keys["operator_a"])
    others = world.of_tenant(TENANT_B)[0].device_id
    own = world.of_tenant(TENANT_A)[0].device_id
    answers = {
        device_id: httpx.post(
            f"{api}/v1/devices", json=_new_device(device_id, TENANT_A), headers=key
        )
        for device_id in (others, own)
    }
    bodies = []
    for device_id, answer in answers.items():
        body = assert_problem(answer, 409)
        text = json.dumps(body)
        assert "taken" in text  # the operator learns to choose another id ...
        assert "exists" not in text  # ... not that a device is there,
        assert TENANT_B not in text  # nor whose it is
        bodies.append(text.replace(device_id, "ID"))
    assert bodies[0] == bodies[1]


def test_a_taken_id_in_an_import_says_taken_not_whose(api: str, world: World) -> None:
    others = world.of_tenant(TENANT_B)[0].device_id
    device = _new_device(others, TENANT_A)
    feature = {
        "type": "Feature",
        "geometry": device.pop("location"),
        "properties": device,
    }
    answer = httpx.post(
        f"{api}/v1/device-imports",
        json={"type": "FeatureCollection", "features": [feature]},
        headers={**bearer(world.keys["operator_a"]), "Content-Type": "application/geo+json"},
    )
    text = json.dumps(assert_problem(answer, 400))
    assert "taken" in text
    assert "exists" not in text
    assert TENANT_B not in text


# -- /metrics has its own access control -----------------------------------------------------------


def test_metrics_are_not_for_anyone(api: str, world: World, config: ApiConfig) -> None:
    assert_problem(httpx.get(f"{api}/metrics"), 401)
    assert_problem(httpx.get(f"{api}/metrics", headers=bearer(world.keys["viewer_a"])), 403)
    assert_problem(httpx.get(f"{api}/metrics", headers=bearer(world.keys["operator_a"])), 403)
    assert_problem(httpx.get(f"{api}/metrics", headers=bearer("a-wrong-scrape-token")), 401)
    by_admin = httpx.get(f"{api}/metrics", headers=bearer(world.keys["admin"]))
    assert by_admin.status_code == 200
    assert "lantaarn_http_requests_total" in by_admin.text
    assert config.metrics_token is not None
    by_token = httpx.get(f"{api}/metrics", headers=bearer(config.metrics_token))
    assert by_token.status_code == 200


# -- failed logins are rate limited per client address ---------------------------------------------


@pytest.fixture
def fresh_api(config: ApiConfig) -> Iterator[str]:
    """An API of its own: no failures counted yet."""
    with serving(config, hosts=("127.0.0.1", "::1")) as url:
        yield url


def test_guessing_keys_is_slowed_per_address_and_locks_out_nobody_else(
    fresh_api: str, world: World
) -> None:
    port = urlsplit(fresh_api).port
    guesser = f"http://127.0.0.1:{port}"
    holder = f"http://[::1]:{port}"
    wrong = bearer("ltn_0123456789abcdef_" + "C" * 43)
    statuses = [httpx.get(f"{guesser}/v1/latest", headers=wrong).status_code for _ in range(BURST)]
    assert statuses == [401] * BURST
    refused = httpx.get(f"{guesser}/v1/latest", headers=wrong)
    body = assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Retry-After" not in body
    # The guesser's address may not try even a right key now (else it would learn which is right)
    assert_problem(httpx.get(f"{guesser}/v1/latest", headers=bearer(world.keys["admin"])), 429)
    # ... nor send a body.
    head = post_head(guesser, "/v1/devices", f"Authorization: Bearer {world.keys['admin']}\n")
    assert send_partly(guesser, head).status == 429
    # Without a key it is not guessing: open endpoints still answer.
    assert httpx.get(f"{guesser}/v1/health/live").status_code == 200
    # The key's holder elsewhere is not locked out.
    assert httpx.get(f"{holder}/v1/latest", headers=bearer(world.keys["admin"])).status_code == 200
