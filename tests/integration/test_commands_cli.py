"""`lantaarn commands`: send checks the command against the catalogue and stores it; list and
show read the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import Device, Registry, Tenant
from lantaarn.cli import main

LAMP = Device("gm0363-lp-1", "GM0363", "lamppost", "Damrak", 52.37, 4.89)


@pytest.fixture
def registry_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registry with one lamp, named by LANTAARN_REGISTRY_URL."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_devices([LAMP])
    monkeypatch.setenv("LANTAARN_REGISTRY_URL", url)
    return url


def test_send_list_and_show(registry_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", LAMP.device_id, "set_dim_level", "level=40"]) == 0
    command_id = capsys.readouterr().out.strip()
    assert len(command_id) == 36
    assert main(["commands", "list", "--device", LAMP.device_id]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert command_id in line
    assert 'set_dim_level {"level": 40}  created  admin cli:' in line
    assert main(["commands", "show", command_id]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f'set_dim_level {{"level": 40}} to GM0363/{LAMP.device_id}'
    assert shown[2].split()[-1] == "created"


def test_a_command_that_does_not_fit_is_refused_with_the_reason(
    registry_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["commands", "send", LAMP.device_id, "set_dim_level", "level=140"]) == 2
    assert "level must be within 0..100" in capsys.readouterr().err
    assert main(["commands", "send", "gm0363-lp-404", "reboot"]) == 2
    assert "no device" in capsys.readouterr().err
    assert main(["commands", "send", LAMP.device_id, "switch", "on"]) == 2
    assert "ARG=VALUE" in capsys.readouterr().err
    assert main(["commands", "list"]) == 0
    assert capsys.readouterr().out == ""
