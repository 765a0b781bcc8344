"""The alert routes: rules (built-in and own), roles and tenants, listing and acknowledging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from api import ApiConfig, create_app
from api.keys import KeyStore, Role
from devices import Registry, Tenant
from devices.alert_rules import AlertState, Change
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio

Setup = tuple[dict[str, str], httpx.AsyncClient, str]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    keys = {}
    with Registry(url) as registry, KeyStore(url) as store:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_tenant(Tenant("GM0344", "Utrecht"))
        for use, role, tenants in (
            ("admin", Role.ADMIN, None),
            ("operator_a", Role.OPERATOR, ["GM0363"]),
            ("operator_b", Role.OPERATOR, ["GM0344"]),
            ("viewer_a", Role.VIEWER, ["GM0363"]),
        ):
            keys[use] = store.create(role, tenants, name=use)[1]
    app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield keys, client, url


def _as(keys: dict[str, str], use: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[use]}"}


OWN = {
    "tenant": "GM0363",
    "type": "threshold",
    "name": "Night noise Dam",
    "kind": "noise",
    "metric": "laeq",
    "statistic": "energetic_mean",
    "window": "15m",
    "fireAt": 55,
    "resolveAt": 52,
    "forSeconds": 300,
    "activeFrom": "23:00",
    "activeUntil": "07:00",
    "bbox": "4.88,52.36,4.90,52.38",
}


async def test_rules_are_made_read_changed_and_deleted_by_operators(setup: Setup) -> None:
    keys, http, _ = setup
    made = await http.post("/v1/alert-rules", json=OWN, headers=_as(keys, "operator_a"))
    assert made.status_code == 201, made.text
    rule = made.json()
    assert (rule["forSeconds"], rule["bbox"], rule["revision"]) == (300, "4.88,52.36,4.9,52.38", 1)
    assert made.headers["Location"].endswith(f"/v1/alert-rules/{rule['id']}")
    builtin = await http.post(
        "/v1/alert-rules",
        json={"tenant": "GM0363", "builtin": "pm25-who", "forSeconds": 0},
        headers=_as(keys, "operator_a"),
    )
    assert builtin.status_code == 201, builtin.text
    assert (builtin.json()["builtin"], builtin.json()["fireAt"], builtin.json()["forSeconds"]) == (
        "pm25-who",
        25.0,
        0,
    )
    listed = await http.get("/v1/alert-rules", headers=_as(keys, "viewer_a"))
    assert {r["id"] for r in listed.json()["items"]} == {rule["id"], builtin.json()["id"]}
    patched = await http.patch(
        f"/v1/alert-rules/{rule['id']}",
        json={"fireAt": 60, "resolveAt": 57, "enabled": False},
        headers=_as(keys, "operator_a"),
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["fireAt"], patched.json()["enabled"], patched.json()["revision"]) == (
        60,
        False,
        2,
    )
    viewer = await http.patch(
        f"/v1/alert-rules/{rule['id']}", json={"fireAt": 1}, headers=_as(keys, "viewer_a")
    )
    assert viewer.status_code == 403
    gone = await http.delete(f"/v1/alert-rules/{rule['id']}", headers=_as(keys, "operator_a"))
    assert gone.status_code == 204
    again = await http.get(f"/v1/alert-rules/{rule['id']}", headers=_as(keys, "admin"))
    assert again.status_code == 404


async def test_a_bad_rule_is_400_naming_every_problem(setup: Setup) -> None:
    keys, http, _ = setup
    bad = {**OWN, "statistic": "mean", "resolveAt": 70, "zone": "Nowhere/Else"}
    answer = await http.post("/v1/alert-rules", json=bad, headers=_as(keys, "operator_a"))
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    names = {p["name"] for p in answer.json()["invalidParams"]}
    assert names == {"statistic", "resolveAt", "zone"}
    unknown = await http.post(
        "/v1/alert-rules",
        json={"tenant": "GM0363", "builtin": "nope"},
        headers=_as(keys, "operator_a"),
    )
    assert [p["name"] for p in unknown.json()["invalidParams"]] == ["builtin"]
    made = (await http.post("/v1/alert-rules", json=OWN, headers=_as(keys, "admin"))).json()
    nulled = await http.patch(
        f"/v1/alert-rules/{made['id']}", json={"window": None}, headers=_as(keys, "admin")
    )
    assert nulled.status_code == 400
    assert [p["name"] for p in nulled.json()["invalidParams"]] == ["window"]


async def test_tenants_never_see_each_others_rules_or_alerts(setup: Setup) -> None:
    keys, http, url = setup
    other = await http.post("/v1/alert-rules", json=OWN, headers=_as(keys, "operator_b"))
    assert other.status_code == 403  # naming a tenant outside the key
    made = (await http.post("/v1/alert-rules", json=OWN, headers=_as(keys, "operator_a"))).json()
    for method in ("get", "delete"):
        answer = await getattr(http, method)(
            f"/v1/alert-rules/{made['id']}", headers=_as(keys, "operator_b")
        )
        assert answer.status_code == 404
    assert (await http.get("/v1/alert-rules", headers=_as(keys, "operator_b"))).json() == {
        "items": []
    }
    with Registry(url) as registry:
        rule = registry.rule(made["id"])
        (alert_id,) = registry.apply(
            [Change(rule, "dam-1", "dam-1", AlertState.FIRING, 58.0, "58 dB")], ["webhook"]
        )
    mine = await http.get("/v1/alerts", headers=_as(keys, "viewer_a"))
    assert [a["id"] for a in mine.json()["items"]] == [alert_id]
    theirs = await http.get("/v1/alerts", headers=_as(keys, "operator_b"))
    assert theirs.json()["items"] == []
    hidden = await http.get(f"/v1/alerts/{alert_id}", headers=_as(keys, "operator_b"))
    assert hidden.status_code == 404
    ack = await http.post(
        f"/v1/alerts/{alert_id}/acknowledge", json={"note": "x"}, headers=_as(keys, "operator_b")
    )
    assert ack.status_code == 404


async def test_an_operator_acknowledges_a_firing_alert_with_a_note(setup: Setup) -> None:
    keys, http, url = setup
    made = (await http.post("/v1/alert-rules", json=OWN, headers=_as(keys, "operator_a"))).json()
    with Registry(url) as registry:
        rule = registry.rule(made["id"])
        firing, pending = registry.apply(
            [
                Change(rule, "dam-1", "dam-1", AlertState.FIRING, 58.0, "58 dB"),
                Change(rule, "dam-2", "dam-2", AlertState.PENDING, 56.0, "56 dB"),
            ],
            ["webhook"],
            now=datetime(2026, 12, 1, 23, 30, tzinfo=UTC),
        )
    by_state = await http.get(
        "/v1/alerts", params={"state": "firing", "tenant": "GM0363"}, headers=_as(keys, "viewer_a")
    )
    assert [a["id"] for a in by_state.json()["items"]] == [firing]
    by_device = await http.get(
        "/v1/alerts", params={"deviceId": "dam-2"}, headers=_as(keys, "viewer_a")
    )
    assert [a["id"] for a in by_device.json()["items"]] == [pending]
    viewer = await http.post(
        f"/v1/alerts/{firing}/acknowledge", json={"note": "x"}, headers=_as(keys, "viewer_a")
    )
    assert viewer.status_code == 403
    taken = await http.post(
        f"/v1/alerts/{firing}/acknowledge",
        json={"note": "crew on the way"},
        headers=_as(keys, "operator_a"),
    )
    assert taken.status_code == 200, taken.text
    body = taken.json()
    assert (body["state"], body["note"]) == ("acknowledged", "crew on the way")
    assert [e["state"] for e in body["events"]] == ["firing", "acknowledged"]
    assert body["events"][0]["at"] == "2026-12-01T23:30:00.000Z"
    assert [(d["channel"], d["state"]) for d in body["deliveries"]] == [("webhook", "pending")]
    twice = await http.post(
        f"/v1/alerts/{pending}/acknowledge", json={"note": "x"}, headers=_as(keys, "operator_a")
    )
    assert twice.status_code == 409
    empty = await http.post(
        f"/v1/alerts/{firing}/acknowledge", json={"note": ""}, headers=_as(keys, "operator_a")
    )
    assert empty.status_code == 400


async def test_alerts_are_paged_newest_first(setup: Setup) -> None:
    keys, http, url = setup
    made = (await http.post("/v1/alert-rules", json=OWN, headers=_as(keys, "admin"))).json()
    with Registry(url) as registry:
        rule = registry.rule(made["id"])
        for n in range(5):
            registry.apply(
                [Change(rule, f"d-{n}", f"d-{n}", AlertState.FIRING, 60.0, "x")],
                [],
                now=datetime(2026, 12, 1, 23, n, tzinfo=UTC),
            )
    seen: list[str] = []
    page = await http.get("/v1/alerts", params={"limit": 2}, headers=_as(keys, "admin"))
    while True:
        seen += [a["subject"] for a in page.json()["items"]]
        if page.json()["next"] is None:
            break
        assert "Link" in page.headers
        page = await http.get(
            "/v1/alerts",
            params={"limit": 2, "cursor": page.json()["next"]},
            headers=_as(keys, "admin"),
        )
    assert seen == ["d-4", "d-3", "d-2", "d-1", "d-0"]


async def test_non_finite_numbers_are_400_not_500(setup: Setup) -> None:
    keys, http, _ = setup
    for name in ("fireAt", "groupShare", "maxShare", "marginSeconds", "powerTolerance"):
        body = orjson.dumps({**OWN, name: 0.5}).decode().replace("0.5", "NaN")
        answer = await http.post(
            "/v1/alert-rules",
            content=body,
            headers={**_as(keys, "operator_a"), "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, (name, answer.text)


async def test_the_lamp_refusing_builtin_takes_a_long_window_thresholds_do_not(
    setup: Setup,
) -> None:
    keys, http, _ = setup
    made = await http.post(
        "/v1/alert-rules",
        json={"tenant": "GM0363", "builtin": "lamp-refusing", "maxFailures": 5, "window": "24h"},
        headers=_as(keys, "operator_a"),
    )
    assert made.status_code == 201, made.text
    assert (made.json()["type"], made.json()["maxFailures"], made.json()["window"]) == (
        "commands",
        5,
        "24h",
    )
    long = await http.post(
        "/v1/alert-rules", json={**OWN, "window": "6h"}, headers=_as(keys, "operator_a")
    )
    assert long.status_code == 400
    assert [p["name"] for p in long.json()["invalidParams"]] == ["window"]


HOOK = {
    "tenant": "GM0363",
    "type": "webhook",
    "name": "Storingsdienst",
    "url": "https://meldingen.example.nl/hook",
}


async def test_a_tenants_webhook_key_is_shown_once_and_renewed(setup: Setup) -> None:
    keys, http, _ = setup
    made = await http.post("/v1/alert-channels", json=HOOK, headers=_as(keys, "operator_a"))
    assert made.status_code == 201, made.text
    channel = made.json()
    secret = channel["secret"]
    assert len(secret) >= 40
    assert channel["secretHint"] == f"…{secret[-4:]}"
    assert made.headers["Location"].endswith(f"/v1/alert-channels/{channel['id']}")
    for answer in (
        await http.get(f"/v1/alert-channels/{channel['id']}", headers=_as(keys, "operator_a")),
        await http.get("/v1/alert-channels", headers=_as(keys, "admin")),
    ):
        assert answer.status_code == 200
        assert secret[:-4] not in answer.text  # the key, all but its hint, never again
        assert 'secret"' not in answer.text.replace("secretHint", "")
    renewed = await http.post(
        f"/v1/alert-channels/{channel['id']}/secret", headers=_as(keys, "operator_a")
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["secret"] != secret
    assert renewed.json()["revision"] == 2
    patched = await http.patch(
        f"/v1/alert-channels/{channel['id']}",
        json={"url": "https://other.example.nl/x", "enabled": False},
        headers=_as(keys, "operator_a"),
    )
    assert (patched.json()["url"], patched.json()["enabled"]) == (
        "https://other.example.nl/x",
        False,
    )
    assert "secret" not in patched.json()
    gone = await http.delete(f"/v1/alert-channels/{channel['id']}", headers=_as(keys, "operator_a"))
    assert gone.status_code == 204
    again = await http.get(f"/v1/alert-channels/{channel['id']}", headers=_as(keys, "operator_a"))
    assert again.status_code == 404


async def test_tenants_never_see_or_change_each_others_channels(setup: Setup) -> None:
    keys, http, _ = setup
    made = await http.post("/v1/alert-channels", json=HOOK, headers=_as(keys, "operator_a"))
    channel_id = made.json()["id"]
    path = f"/v1/alert-channels/{channel_id}"
    b = _as(keys, "operator_b")
    assert (await http.get("/v1/alert-channels", headers=b)).json()["items"] == []
    assert (await http.get(path, headers=b)).status_code == 404
    assert (await http.patch(path, json={"name": "x"}, headers=b)).status_code == 404
    assert (await http.post(f"{path}/secret", headers=b)).status_code == 404
    assert (await http.delete(path, headers=b)).status_code == 404
    named = await http.get("/v1/alert-channels?tenant=GM0363", headers=b)
    assert named.status_code == 403
    foreign = await http.post("/v1/alert-channels", json=HOOK, headers=b)
    assert foreign.status_code == 403
    # Viewers read alerts, not where they go (addresses are personal data, URLs may be secret).
    viewer = await http.get("/v1/alert-channels", headers=_as(keys, "viewer_a"))
    assert viewer.status_code == 403
    still = await http.get(path, headers=_as(keys, "operator_a"))
    assert (still.json()["name"], still.json()["revision"]) == ("Storingsdienst", 1)


INTERNAL = [
    "http://[::1]:8080/hook",
    "http://127.0.0.1/hook",
    "http://10.1.2.3/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/hook",
    "http://[fd00::5]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost:8086/query",
    "http://influx.internal/query",
    "http://intranet/hook",
    "ftp://meldingen.example.nl/hook",
    "https://user:pw@meldingen.example.nl/hook",
]


async def test_a_webhook_to_an_internal_address_is_refused(setup: Setup) -> None:
    keys, http, _ = setup
    for url in INTERNAL:
        answer = await http.post(
            "/v1/alert-channels", json={**HOOK, "url": url}, headers=_as(keys, "operator_a")
        )
        assert answer.status_code == 400, (url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert [p["name"] for p in answer.json()["invalidParams"]] == ["url"]


async def test_the_platform_may_allow_internal_webhooks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as registry, KeyStore(url) as store:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        key = store.create(Role.OPERATOR, ["GM0363"], name="op")[1]
    app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9"), alert_webhooks_internal=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answer = await http.post(
                "/v1/alert-channels",
                json={**HOOK, "url": "http://[::1]:8080/hook"},
                headers={"Authorization": f"Bearer {key}"},
            )
    assert answer.status_code == 201, answer.text


async def test_email_and_alertmanager_channels_and_their_mistakes(setup: Setup) -> None:
    keys, http, _ = setup
    a = _as(keys, "operator_a")
    mail = await http.post(
        "/v1/alert-channels",
        json={
            "tenant": "GM0363",
            "type": "email",
            "name": "Wachtdienst",
            "recipients": ["wacht@amsterdam.nl", "storing@amsterdam.nl"],
            "language": "en",
        },
        headers=a,
    )
    assert mail.status_code == 201, mail.text
    assert (mail.json()["recipients"], mail.json()["secret"], mail.json()["secretHint"]) == (
        ["wacht@amsterdam.nl", "storing@amsterdam.nl"],
        None,
        None,
    )
    labels = await http.post(
        "/v1/alert-channels",
        json={
            "tenant": "GM0363",
            "type": "alertmanager",
            "name": "On-call",
            "labels": {"team": "verlichting", "severity": "critical"},
        },
        headers=a,
    )
    assert labels.status_code == 201, labels.text
    assert labels.json()["labels"] == {"severity": "critical", "team": "verlichting"}
    bad = await http.post(
        "/v1/alert-channels",
        json={
            "tenant": "GM0363",
            "type": "email",
            "name": "x",
            "recipients": ["not-an-address"],
            "url": "https://example.nl/x",
        },
        headers=a,
    )
    assert bad.status_code == 400
    assert sorted(p["name"] for p in bad.json()["invalidParams"]) == ["recipients", "url"]
    reserved = await http.post(
        "/v1/alert-channels",
        json={"tenant": "GM0363", "type": "alertmanager", "name": "x", "labels": {"tenant": "X"}},
        headers=a,
    )
    assert reserved.status_code == 400
    no_key = await http.post(f"/v1/alert-channels/{mail.json()['id']}/secret", headers=a)
    assert no_key.status_code == 400
