"""The command routes without a broker: the catalogue, bad commands, roles and tenants, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api import ApiConfig, create_app
from api.keys import KeyStore, Role
from devices import Device, Registry, Tenant
from lantaarn.settings import Settings
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio

LAMP_A = Device("gm0363-lp-1", "GM0363", "lamppost", "Damrak", 52.37, 4.89)
LAMP_A2 = Device("gm0363-lp-2", "GM0363", "lamppost", "Rokin", 52.368, 4.892)
NOISE_A = Device("gm0363-noise-1", "GM0363", "noise", "Dam", 52.373, 4.893)
LAMP_B = Device("gm0344-lp-1", "GM0344", "lamppost", "Oudegracht", 52.09, 5.12)
RETIRED = Device("gm0363-lp-old", "GM0363", "lamppost", "Gone", 52.36, 4.88)


@pytest.fixture
async def keys_and_http(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """The app (no command service) on a fresh SQLite registry with two tenants' devices."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    keys = {}
    with Registry(url) as registry, KeyStore(url) as store:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_tenant(Tenant("GM0344", "Utrecht"))
        registry.add_devices([LAMP_A, LAMP_A2, NOISE_A, LAMP_B, RETIRED])
        registry.retire(RETIRED.device_id)
        for use, role, tenants in (
            ("admin", Role.ADMIN, None),
            ("operator_a", Role.OPERATOR, ["GM0363"]),
            ("operator_b", Role.OPERATOR, ["GM0344"]),
            ("viewer_a", Role.VIEWER, ["GM0363"]),
            ("viewer_b", Role.VIEWER, ["GM0344"]),
        ):
            keys[use] = store.create(role, tenants, name=use)[1]
    app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield keys, client


def _as(keys: dict[str, str], use: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[use]}"}


async def test_device_kinds_list_their_commands_with_typed_ranged_arguments(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    _, http = keys_and_http
    kinds = {k["name"]: k for k in (await http.get("/v1/device-kinds")).json()}
    lamp = {c["name"]: c for c in kinds["lamppost"]["commands"]}
    assert set(lamp) == {"set_dim_level", "switch", "set_schedule", "set_interval", "reboot"}
    (level,) = lamp["set_dim_level"]["arguments"]
    assert level == {
        "name": "level",
        "type": "integer",
        "description": "Dim level",
        "minimum": 0.0,
        "maximum": 100.0,
        "pattern": None,
        "unit": "%",
    }
    assert lamp["switch"]["arguments"][0]["type"] == "boolean"
    assert {c["name"] for c in kinds["noise"]["commands"]} == {"set_interval", "reboot"}


async def test_a_command_that_does_not_fit_is_400_naming_each_bad_field(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    url = f"/v1/devices/{LAMP_A.device_id}/commands"
    bad = await http.post(
        url,
        json={"name": "set_dim_level", "args": {"level": 140, "fade": 3}},
        headers=_as(keys, "operator_a"),
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert [p["name"] for p in bad.json()["invalidParams"]] == ["args.level", "args.fade"]
    unknown = await http.post(url, json={"name": "explode"}, headers=_as(keys, "operator_a"))
    assert [p["name"] for p in unknown.json()["invalidParams"]] == ["name"]
    noise = await http.post(
        f"/v1/devices/{NOISE_A.device_id}/commands",
        json={"name": "switch", "args": {"on": True}},
        headers=_as(keys, "operator_a"),
    )
    assert noise.status_code == 400
    deadline = await http.post(
        url, json={"name": "reboot", "deadlineSeconds": 0}, headers=_as(keys, "operator_a")
    )
    assert deadline.status_code == 400
    assert deadline.json()["invalidParams"][0]["name"] == "deadlineSeconds"
    retired = await http.post(
        f"/v1/devices/{RETIRED.device_id}/commands",
        json={"name": "reboot"},
        headers=_as(keys, "operator_a"),
    )
    assert retired.status_code == 400
    # Nothing of it was stored.
    history = await http.get("/v1/commands", headers=_as(keys, "admin"))
    assert history.json()["items"] == []


async def test_operators_of_the_tenant_command_viewers_read_other_tenants_see_nothing(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    url = f"/v1/devices/{LAMP_A.device_id}/commands"
    body = {"name": "switch", "args": {"on": True}}
    assert (await http.post(url, json=body)).status_code == 401
    assert (await http.post(url, json=body, headers=_as(keys, "viewer_a"))).status_code == 403
    assert (await http.post(url, json=body, headers=_as(keys, "operator_b"))).status_code == 404
    made = await http.post(url, json=body, headers=_as(keys, "operator_a"))
    assert made.status_code == 201, made.text
    command = made.json()
    assert command["state"] == "created"  # no command service here: stored, not yet sent
    assert command["issuedRole"] == "operator"
    assert command["tenant"] == "GM0363"
    one = f"/v1/commands/{command['id']}"
    assert (await http.get(one, headers=_as(keys, "viewer_a"))).status_code == 200
    assert (await http.get(one, headers=_as(keys, "viewer_b"))).status_code == 404
    assert (await http.get(url, headers=_as(keys, "viewer_b"))).status_code == 404
    listed = await http.get(url, headers=_as(keys, "viewer_a"))
    assert [c["id"] for c in listed.json()["items"]] == [command["id"]]
    assert (await http.get("/v1/commands", headers=_as(keys, "viewer_b"))).json()["items"] == []
    named = await http.get("/v1/commands?tenant=GM0363", headers=_as(keys, "viewer_b"))
    assert named.status_code == 403


async def test_group_commands_select_within_the_callers_tenants(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient],
) -> None:
    keys, http = keys_and_http
    body = {"name": "set_dim_level", "args": {"level": 10}}
    as_a = _as(keys, "operator_a")
    other = await http.post(
        "/v1/commands", json={**body, "selector": {"tenant": "GM0344"}}, headers=as_a
    )
    assert other.status_code == 403
    foreign_ids = await http.post(
        "/v1/commands",
        json={**body, "selector": {"deviceIds": [LAMP_A.device_id, LAMP_B.device_id]}},
        headers=as_a,
    )
    assert foreign_ids.status_code == 400
    assert foreign_ids.json()["invalidParams"][0]["name"] == "selector.deviceIds"
    assert LAMP_B.device_id in foreign_ids.json()["detail"]
    empty = await http.post("/v1/commands", json={**body, "selector": {}}, headers=as_a)
    assert empty.status_code == 400
    mixed = await http.post(
        "/v1/commands", json={**body, "selector": {"tenant": "GM0363"}}, headers=as_a
    )
    assert mixed.status_code == 400  # the noise sensor has no dim level
    made = await http.post(
        "/v1/commands",
        json={**body, "selector": {"tenant": "GM0363", "kind": "lamppost"}},
        headers=as_a,
    )
    assert made.status_code == 202, made.text
    group = made.json()
    assert group["devices"] == 2  # the retired lamp is left out
    assert group["progress"] == {"created": 2}
    assert group["finished"] is False
    location = made.headers["location"]
    assert (await http.get(location, headers=_as(keys, "viewer_b"))).status_code == 404
    page = await http.get(
        f"/v1/commands?groupId={group['id']}&limit=1", headers=_as(keys, "viewer_a")
    )
    assert len(page.json()["items"]) == 1
    assert 'rel="next"' in page.headers["link"]
    rest = await http.get(
        f"/v1/commands?groupId={group['id']}&limit=1&cursor={page.json()['next']}",
        headers=_as(keys, "viewer_a"),
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next"] is None
    assert {page.json()["items"][0]["deviceId"], rest.json()["items"][0]["deviceId"]} == {
        LAMP_A.device_id,
        LAMP_A2.device_id,
    }
    bad_cursor = await http.get("/v1/commands?cursor=eyJ4IjoxfQ", headers=_as(keys, "admin"))
    assert bad_cursor.status_code == 400


def test_the_command_service_is_configured_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LANTAARN_DATA_DIR", str(tmp_path))
    assert Settings().command_service() is None  # off unless asked for
    monkeypatch.setenv("LANTAARN_COMMANDS__ENABLED", "true")
    monkeypatch.setenv("LANTAARN_COMMANDS__USERNAME", "lantaarn-commands")
    monkeypatch.setenv("LANTAARN_COMMANDS__PASSWORD", "pw")
    monkeypatch.setenv("LANTAARN_COMMANDS__CLIENT_ID", "commands-api-2")
    monkeypatch.setenv("LANTAARN_MQTT__PORT", "1884")
    config = Settings().command_service()
    assert config is not None
    assert (config.port, config.username, config.password) == (1884, "lantaarn-commands", "pw")
    assert config.client_id == "commands-api-2"
    assert Settings().api_config().commands == config
