"""/v1/latest from the device-state store (paged, ETag), /v1/summary and /v1/events, per tenant.

A live API over real HTTP (uvicorn in a thread), a SQLite registry whose device-state rows the
test writes as a worker would, and a real InfluxDB holding older readings of every device (what
/v1/latest falls back to for devices the store has not seen yet).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

import api.routes.events as events_route
from api.sessions import COOKIE
from api.timefmt import format_ns
from devices import DEVICE_KINDS, Device, Registry
from devices.registry import ReadingUpdate, StatusUpdate
from lantaarn.localstack import Influx
from tests.api.liveapi import TENANT_A, TENANT_B, World, seed_world, serving

NS = 1_000_000_000
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def world(influx: Influx, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two tenants' devices with readings in InfluxDB, and keys."""
    return seed_world(influx, tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[str]:
    """The live API, its event stream quick enough for a test."""
    patch = pytest.MonkeyPatch()
    patch.setattr(events_route, "TICK_S", 0.2)
    patch.setattr(events_route, "HEARTBEAT_S", 0.5)
    with serving(world.config) as url:
        yield url
    patch.undo()


def _key(world: World, use: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.keys[use]}"}


def _metric(device: Device) -> str:
    return DEVICE_KINDS[device.kind].metrics[0].name


def _record(world: World, devices: list[Device], value_of: Any) -> None:
    """Write the devices' newest readings to the store, as a worker's flush does."""
    now = time.time_ns()
    with Registry(world.config.registry_url) as registry:
        registry.record_states(
            [ReadingUpdate(d.device_id, d.tenant, now, {_metric(d): value_of(d)}) for d in devices],
            now_ns=now,
        )


def _next(api: str, link: str) -> str:
    """The URL of the next page named by a `Link` header."""
    return str(httpx.URL(api).join(link[1 : link.index(">")]))


def _marker(device: Device) -> float:
    # The metric's minimum: the seeded readings in InfluxDB are all strictly inside the range.
    return DEVICE_KINDS[device.kind].metrics[0].minimum


def test_latest_keeps_what_it_found_in_influxdb_in_the_store(api: str, world: World) -> None:
    # The store starts empty (a new database beside an InfluxDB full of readings): the first
    # page looks its devices up in InfluxDB and writes them to the store, the next reads them.
    theirs = world.of_tenant(TENANT_B)
    with Registry(world.config.registry_url) as registry:
        assert registry.device_states(d.device_id for d in theirs) == {}  # runs first
    first = httpx.get(f"{api}/v1/latest", headers=_key(world, "viewer_b"))
    assert first.status_code == 200
    with Registry(world.config.registry_url) as registry:
        kept = registry.device_states(d.device_id for d in theirs)
    answered = {item["deviceId"]: item for item in first.json()}
    assert set(kept) == set(answered) == {d.device_id for d in theirs}
    for device_id, state in kept.items():
        assert state.last_ns is not None
        assert answered[device_id]["ts"] == format_ns(state.last_ns)
        assert state.metrics == answered[device_id]["metrics"]
    again = httpx.get(f"{api}/v1/latest", headers=_key(world, "viewer_b"))
    assert again.json() == first.json()


def test_latest_pages_one_tenant_from_the_store(api: str, world: World) -> None:
    ours = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)
    stored = ours[::2]
    _record(world, stored, _marker)
    seen: list[dict[str, Any]] = []
    url: str | None = f"{api}/v1/latest?limit=2"
    pages = 0
    while url is not None:
        answer = httpx.get(url, headers=_key(world, "viewer_a"))
        assert answer.status_code == 200, answer.text
        seen.extend(answer.json())
        pages += 1
        link = answer.headers.get("link")
        url = _next(api, link) if link else None
    assert pages == (len(ours) + 1) // 2
    assert [item["deviceId"] for item in seen] == [d.device_id for d in ours]
    by_id = {item["deviceId"]: item for item in seen}
    for device in ours:
        item = by_id[device.device_id]
        value = item["metrics"][_metric(device)]
        if device in stored:
            assert value == _marker(device)  # from the store
            assert item["status"] == "online"
        else:
            assert value > _marker(device)  # not in the store yet: InfluxDB's newest
    # GeoJSON pages the same way.
    geo = httpx.get(
        f"{api}/v1/latest",
        params={"limit": 2},
        headers={**_key(world, "viewer_a"), "Accept": "application/geo+json"},
    )
    assert geo.status_code == 200
    assert [f["id"] for f in geo.json()["features"]] == [d.device_id for d in ours[:2]]
    assert 'rel="next"' in geo.headers["link"]


def test_latest_pages_only_the_devices_inside_a_box(api: str, world: World) -> None:
    # The dashboard's table filtered by an area chosen on the map: the server picks the
    # devices inside, every page full, rather than the browser filtering one page.
    ours = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)
    lats = sorted(d.latitude for d in ours)
    middle = lats[len(lats) // 2]
    inside = [d.device_id for d in ours if d.latitude <= middle]
    assert 0 < len(inside) < len(ours), "the box must leave some of the tenant's devices out"
    lons = [d.longitude for d in ours]
    box = f"{min(lons)},{min(lats)},{max(lons)},{middle}"
    seen: list[str] = []
    url: str | None = f"{api}/v1/latest?limit=1&bbox={box}"
    while url is not None:
        answer = httpx.get(url, headers=_key(world, "viewer_a"))
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == 1
        seen.extend(item["deviceId"] for item in answer.json())
        link = answer.headers.get("link")
        url = _next(api, link) if link else None
    assert seen == inside
    for wrong in ("4,52,5", "4,53,5,52", "a,b,c,d"):
        refused = httpx.get(
            f"{api}/v1/latest", params={"bbox": wrong}, headers=_key(world, "viewer_a")
        )
        assert refused.status_code == 400, wrong
        assert refused.json()["invalidParams"][0]["name"] == "bbox"


def test_latest_never_crosses_tenants(api: str, world: World) -> None:
    first = httpx.get(f"{api}/v1/latest?limit=1", headers=_key(world, "viewer_a"))
    next_url = _next(api, first.headers["link"])
    # The other tenant's key with the first tenant's cursor: its own devices only.
    after = first.json()[0]["deviceId"]
    theirs = httpx.get(next_url, headers=_key(world, "viewer_b"))
    assert theirs.status_code == 200
    assert [item["deviceId"] for item in theirs.json()] == sorted(
        d.device_id for d in world.of_tenant(TENANT_B) if d.device_id > after
    )
    assert {item["tenant"] for item in theirs.json()} <= {TENANT_B}
    everything = httpx.get(f"{api}/v1/latest", headers=_key(world, "viewer_b")).json()
    assert sorted(item["deviceId"] for item in everything) == sorted(
        d.device_id for d in world.of_tenant(TENANT_B)
    )
    refused = httpx.get(f"{api}/v1/latest?tenant={TENANT_B}", headers=_key(world, "viewer_a"))
    assert refused.status_code == 403
    forged = httpx.get(f"{api}/v1/latest?cursor=bm90LW91cnM", headers=_key(world, "viewer_a"))
    assert forged.status_code == 400
    assert forged.headers["content-type"] == PROBLEM
    # Without a key (anonymous reading is off): open data only, and nobody publishes.
    public = httpx.get(f"{api}/v1/latest")
    assert public.status_code == 200
    assert public.json() == []


def test_latest_answers_304_while_nothing_changed(api: str, world: World) -> None:
    headers = _key(world, "viewer_b")
    first = httpx.get(f"{api}/v1/latest", headers=headers)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "no-store"
    again = httpx.get(f"{api}/v1/latest", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    # Another tenant's change leaves ours as it was; our own change does not.
    _record(world, world.of_tenant(TENANT_A)[:1], lambda d: _marker(d) + 1)
    still = httpx.get(f"{api}/v1/latest", headers={**headers, "If-None-Match": etag})
    assert still.status_code == 304
    _record(world, world.of_tenant(TENANT_B)[:1], _marker)
    changed = httpx.get(f"{api}/v1/latest", headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_summary_counts_the_callers_tenants_only(api: str, world: World) -> None:
    answer = httpx.get(f"{api}/v1/summary", headers=_key(world, "viewer_b"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"generatedAt", "devices", "perMinute", "worst", "alerts"}
    ours = world.of_tenant(TENANT_B)
    devices = body["devices"]
    assert devices["total"] == len(ours)
    assert devices["online"] + devices["offline"] + devices["silent"] == len(ours)
    assert {row["tenant"] for row in devices["byTenantKind"]} == {TENANT_B}
    assert sum(row["total"] for row in devices["byTenantKind"]) == len(ours)
    assert len(body["perMinute"]) == 60
    assert set(body["perMinute"][0]) == {"minute", "readings", "rejections"}
    assert all(
        item["tenant"] == TENANT_B and set(item) == {
            "deviceId", "tenant", "kind", "lastSeen", "silentForS"
        }
        for item in body["worst"]["silence"]
    )  # fmt: skip
    assert body["worst"]["completeness"] == []
    assert body["alerts"] == {"firing": 0, "pending": 0}
    everyone = httpx.get(f"{api}/v1/summary", headers=_key(world, "admin")).json()
    assert everyone["devices"]["total"] == len(world.devices)
    assert (
        httpx.get(
            f"{api}/v1/summary?tenant={TENANT_A}", headers=_key(world, "viewer_b")
        ).status_code
        == 403
    )
    assert httpx.get(f"{api}/v1/summary").status_code == 401


def test_summary_answers_304_until_a_device_changes(api: str, world: World) -> None:
    headers = _key(world, "viewer_a")
    etag = httpx.get(f"{api}/v1/summary", headers=headers).headers["etag"]
    # Past the summary's age: computed afresh, still the same. (What the API reads now and then
    # on its own, the lowest completeness from InfluxDB, retried after a failed read, or the
    # next hour's from five past, may change it once: then the next two must agree. A tag
    # that moved with the clock alone would never give a 304.)
    deadline = time.monotonic() + 15
    while True:
        time.sleep(2.2)
        same = httpx.get(f"{api}/v1/summary", headers={**headers, "If-None-Match": etag})
        if same.status_code == 304:
            break
        assert time.monotonic() < deadline, "the summary's ETag changes while nothing does"
        etag = same.headers["etag"]
    device = world.of_tenant(TENANT_A)[-1]
    with Registry(world.config.registry_url) as registry:
        registry.record_states(
            [], [StatusUpdate(device.device_id, device.tenant, "offline", time.time_ns())],
            now_ns=time.time_ns(),
        )  # fmt: skip
    deadline = time.monotonic() + 5
    while True:
        answer = httpx.get(f"{api}/v1/summary", headers={**headers, "If-None-Match": etag})
        if answer.status_code == 200:
            break
        assert time.monotonic() < deadline, "the summary did not change"
        time.sleep(0.2)
    assert answer.json()["devices"]["offline"] >= 1


def _events(lines: Iterator[str], until: Any, timeout_s: float = 10) -> list[tuple[str, Any]]:
    """Read server-sent events (name, data; comments as ("", text)) until `until(events)`."""
    got: list[tuple[str, Any]] = []
    name = ""
    deadline = time.monotonic() + timeout_s
    for line in lines:
        if line.startswith(":"):
            got.append(("", line))
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            got.append((name, orjson.loads(line.removeprefix("data: "))))
        if until(got):
            return got
        assert time.monotonic() < deadline, f"no such events within {timeout_s} s: {got}"
    raise AssertionError(f"the stream ended: {got}")


def _devices_event_id(lines: Iterator[str]) -> str:
    """The id of the next `devices` event (summaries carry ids too)."""
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("id: ") and name == "devices":
            return line.removeprefix("id: ")
    raise AssertionError("the stream ended")


def test_events_stream_the_callers_changes_only(api: str, world: World) -> None:
    ours, theirs = world.of_tenant(TENANT_A), world.of_tenant(TENANT_B)
    with httpx.stream(
        "GET", f"{api}/v1/events", headers=_key(world, "viewer_a"), timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = _events(lines, lambda got: len(got) >= 1)
        assert first[0][0] == "summary"
        assert {r["tenant"] for r in first[0][1]["devices"]["byTenantKind"]} == {TENANT_A}
        _record(world, [*theirs, *ours[:2]], lambda d: _marker(d) + 2)
        got = _events(lines, lambda got: any(name == "devices" for name, _ in got))
        changed = [d for name, data in got if name == "devices" for d in data["devices"]]
        assert {d["deviceId"] for d in changed} == {d.device_id for d in ours[:2]}
        assert all(d["metrics"][_metric(d_)] == _marker(d_) + 2 for d, d_ in zip(
            sorted(changed, key=lambda d: d["deviceId"]),
            sorted(ours[:2], key=lambda d: d.device_id),
            strict=True,
        ))  # fmt: skip
        # Nothing more to say: keep-alive comments.
        quiet = _events(lines, lambda got: any(name == "" for name, _ in got))
        assert all(name in {"", "summary"} for name, _ in quiet)


def test_events_follow_the_dashboard_session(api: str, world: World) -> None:
    signed_in = httpx.post(f"{api}/v1/sessions", headers=_key(world, "viewer_b"))
    assert signed_in.status_code == 201
    cookies = {COOKIE: signed_in.cookies[COOKIE]}
    with httpx.stream("GET", f"{api}/v1/events", cookies=cookies, timeout=10) as response:
        assert response.status_code == 200
        [(name, data)] = _events(response.iter_lines(), lambda got: len(got) >= 1)
        assert name == "summary"
        assert {r["tenant"] for r in data["devices"]["byTenantKind"]} == {TENANT_B}
    refused = httpx.get(f"{api}/v1/events?tenant={TENANT_A}", cookies=cookies)
    assert refused.status_code == 403
    assert httpx.get(f"{api}/v1/events").status_code == 401
    bad = httpx.get(
        f"{api}/v1/events", headers={**_key(world, "viewer_b"), "Last-Event-ID": "nonsense"}
    )
    assert bad.status_code == 400


def test_streams_of_one_tenant_share_one_feed_and_resume_from_last_event_id(
    api: str, world: World
) -> None:
    ours = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)
    theirs = world.of_tenant(TENANT_B)
    headers = _key(world, "viewer_a")
    # The feeds of earlier tests' streams end within a tick of their last stream closing.
    deadline = time.monotonic() + 10
    while events_route.ChangeFeed.running:
        assert time.monotonic() < deadline, "a feed outlived its streams"
        time.sleep(0.05)
    feeds_before = events_route.ChangeFeed.started
    with (
        httpx.stream("GET", f"{api}/v1/events", headers=headers, timeout=10) as one,
        httpx.stream("GET", f"{api}/v1/events", headers=headers, timeout=10) as two,
    ):
        lines_one, lines_two = one.iter_lines(), two.iter_lines()
        _events(lines_one, lambda got: len(got) >= 1)
        _events(lines_two, lambda got: len(got) >= 1)
        _record(world, [ours[0], *theirs], lambda d: _marker(d) + 3)
        got_one = _events(lines_one, lambda got: any(n == "devices" for n, _ in got))
        got_two = _events(lines_two, lambda got: any(n == "devices" for n, _ in got))
        changed = [[d["deviceId"] for n, data in got if n == "devices" for d in data["devices"]]
                   for got in (got_one, got_two)]  # fmt: skip
        assert changed == [[ours[0].device_id]] * 2  # the same change, never the other tenant's
        assert events_route.ChangeFeed.started - feeds_before == 1  # one feed for both
        # Find the id of that event (the raw lines carry it).
        _record(world, [ours[0]], lambda d: _marker(d) + 4)
        seen_id = _devices_event_id(lines_one)
        _record(world, [ours[1], *theirs], lambda d: _marker(d) + 5)
        # stream two sees it: the feed has passed it before a browser comes back.
        _events(lines_two, lambda got: any(
            n == "devices" and any(d["deviceId"] == ours[1].device_id for d in data["devices"])
            for n, data in got
        ))  # fmt: skip
        with httpx.stream(
            "GET", f"{api}/v1/events", headers={**headers, "Last-Event-ID": seen_id}, timeout=10
        ) as back:
            got = _events(back.iter_lines(), lambda got: any(n == "devices" for n, _ in got))
            resumed = [d for n, data in got if n == "devices" for d in data["devices"]]
            assert [d["deviceId"] for d in resumed] == [ours[1].device_id]
            assert resumed[0]["metrics"][_metric(ours[1])] == _marker(ours[1]) + 5


def test_an_event_id_from_the_future_holds_no_stream_back(api: str, world: World) -> None:
    # The first stream of a tenant set (every tenant: an admin's) claims to have seen a change
    # far ahead; the feed it starts still sends what is committed now, to it and to the next.
    headers = _key(world, "admin")
    ahead = {**headers, "Last-Event-ID": f"{2**63 - 1}.zzz"}
    device = world.of_tenant(TENANT_B)[0]
    with (
        httpx.stream("GET", f"{api}/v1/events", headers=ahead, timeout=10) as first,
        httpx.stream("GET", f"{api}/v1/events", headers=headers, timeout=10) as second,
    ):
        assert first.status_code == second.status_code == 200
        streams = [first.iter_lines(), second.iter_lines()]
        for lines in streams:
            _events(lines, lambda got: len(got) >= 1)
        _record(world, [device], lambda d: _marker(d) + 6)
        for lines in streams:
            got = _events(lines, lambda got: any(n == "devices" for n, _ in got))
            sent = [d for n, data in got if n == "devices" for d in data["devices"]]
            assert [d["deviceId"] for d in sent] == [device.device_id]
            assert sent[0]["metrics"][_metric(device)] == _marker(device) + 6


def test_a_stream_naming_devices_is_sent_their_changes_only(api: str, world: World) -> None:
    ours = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)
    theirs = world.of_tenant(TENANT_B)
    headers = _key(world, "viewer_a")
    named = f"{ours[1].device_id},{theirs[0].device_id}"  # the other tenant's: never sent
    with httpx.stream(
        "GET", f"{api}/v1/events", params={"devices": named}, headers=headers, timeout=10
    ) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        _events(lines, lambda got: len(got) >= 1)
        _record(world, [ours[0], *theirs], lambda d: _marker(d) + 7)  # none of them named
        _record(world, [ours[1]], lambda d: _marker(d) + 7)
        got = _events(lines, lambda got: any(n == "devices" for n, _ in got))
        sent = [d for n, data in got if n == "devices" for d in data["devices"]]
        assert [d["deviceId"] for d in sent] == [ours[1].device_id]
        assert sent[0]["metrics"][_metric(ours[1])] == _marker(ours[1]) + 7
    # A dashboard turning to another page opens a stream naming its devices, after the last
    # event it saw: what changed in between is sent.
    with httpx.stream(
        "GET",
        f"{api}/v1/events",
        params={"devices": ours[0].device_id},
        headers=headers,
        timeout=10,
    ) as first:
        lines = first.iter_lines()
        _events(lines, lambda got: len(got) >= 1)
        _record(world, [ours[0]], lambda d: _marker(d) + 8)
        event_id = _devices_event_id(lines)
    _record(world, [ours[2]], lambda d: _marker(d) + 8)  # while no stream is open
    with httpx.stream(
        "GET",
        f"{api}/v1/events",
        params={"devices": ours[2].device_id, "after": event_id},
        headers=headers,
        timeout=10,
    ) as turned:
        got = _events(turned.iter_lines(), lambda got: any(n == "devices" for n, _ in got))
        sent = [d for n, data in got if n == "devices" for d in data["devices"]]
        assert [d["deviceId"] for d in sent] == [ours[2].device_id]
        assert sent[0]["metrics"][_metric(ours[2])] == _marker(ours[2]) + 8


@pytest.mark.parametrize(
    "params",
    [
        {"devices": "Not-An-Id"},
        {"devices": ",".join(f"d{n}" for n in range(events_route.NAMED_MAX + 1))},
        {"devices": "a,,b"},
        {"after": "nonsense"},
    ],
)
def test_a_stream_asked_for_badly_is_answered_400(
    api: str, world: World, params: dict[str, str]
) -> None:
    answer = httpx.get(f"{api}/v1/events", params=params, headers=_key(world, "viewer_a"))
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"] == PROBLEM


def test_a_quiet_named_stream_resumes_from_its_summarys_id(api: str, world: World) -> None:
    device = sorted(world.of_tenant(TENANT_A), key=lambda d: d.device_id)[3]
    headers = _key(world, "viewer_a")
    named = {"devices": device.device_id}
    with httpx.stream(
        "GET", f"{api}/v1/events", params=named, headers=headers, timeout=10
    ) as stream:
        summary_id = None
        for line in stream.iter_lines():
            if line.startswith("id: "):  # the first event with an id: the summary
                summary_id = line.removeprefix("id: ")
                break
        assert summary_id is not None
    _record(world, [device], lambda d: _marker(d) + 9)  # while the browser is away
    with httpx.stream(
        "GET",
        f"{api}/v1/events",
        params=named,
        headers={**headers, "Last-Event-ID": summary_id},
        timeout=10,
    ) as back:
        got = _events(back.iter_lines(), lambda got: any(n == "devices" for n, _ in got))
        sent = [d for n, data in got if n == "devices" for d in data["devices"]]
        assert [d["deviceId"] for d in sent] == [device.device_id]
        assert sent[0]["metrics"][_metric(device)] == _marker(device) + 9
