"""The evaluator as `lantaarn alerts` and `lantaarn demo` build it from the settings, and the
built-in rules the demo switches on."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from devices import Registry, Tenant
from devices.alert_rules import BUILTINS
from lantaarn.alerts import evaluator
from lantaarn.demo import seed_alert_rules
from lantaarn.localstack import free_port
from lantaarn.settings import AlertSettings, Settings
from timeseries import InfluxClient, InfluxConfig

pytestmark = pytest.mark.anyio


async def test_the_settings_give_the_platforms_channels_and_the_tenants_rules(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        alerts=AlertSettings(
            replica="r-1",
            interval_s=5,
            webhook_url="https://hooks.example.nl/x",
            webhook_secret=SecretStr("k"),
            smtp_host="smtp.example.nl",
            smtp_to=["ops@example.nl"],
            allow_internal_webhooks=True,
        ),
    )
    with Registry(settings.registry()) as registry:
        async with InfluxClient(InfluxConfig(f"http://[::1]:{free_port()}")) as client:
            made = evaluator(settings, registry, client)
    assert [c.name for c in made.channels] == ["webhook", "email"]
    assert (made.config.holder, made.config.interval_s) == ("r-1", 5)
    own = made.tenant_channels
    assert own.allow_internal
    assert own.smtp is not None
    assert (own.smtp.host, own.smtp.recipients) == ("smtp.example.nl", ())
    # By default: no platform channel, tenants' webhooks public only, no e-mail server.
    plain = Settings(data_dir=tmp_path)
    with Registry(plain.registry()) as registry:
        async with InfluxClient(InfluxConfig(f"http://[::1]:{free_port()}")) as client:
            bare = evaluator(plain, registry, client)
    assert bare.channels == []
    assert not bare.tenant_channels.allow_internal
    assert bare.tenant_channels.smtp is None


def test_a_webhook_without_its_key_is_refused(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, alerts=AlertSettings(webhook_url="https://hooks.example.nl/x")
    )
    with Registry(settings.registry()) as registry, pytest.raises(ValueError, match="SECRET"):
        evaluator(settings, registry, InfluxClient(InfluxConfig("http://[::1]:9")))


def test_the_demo_switches_every_builtin_on_once_per_tenant(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'r.sqlite3'}") as registry:
        for code in ("GM0363", "GM0344"):
            registry.add_tenant(Tenant(code, code))
        assert seed_alert_rules(registry, ["GM0363", "GM0344"]) == 2 * len(BUILTINS)
        assert seed_alert_rules(registry, ["GM0363", "GM0344"]) == 0
        rules = registry.rules()
    assert {(r.tenant, r.builtin) for r in rules} == {
        (t, b) for t in ("GM0363", "GM0344") for b in BUILTINS
    }
    assert "lamp-refusing" in BUILTINS
