"""Bulk import and export: CSV and GeoJSON, every bad row reported, all rows or none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices import ImportRejected, Registry
from devices.provisioning import verify_password
from devices.transfer import Format, export, import_devices
from lantaarn.cli import main

HEADER = "deviceId,tenant,kind,name,latitude,longitude,ipv6Address,owner,personalData,activeUntil"
GOOD_CSV = (
    f"{HEADER}\n"
    "gm0363-aq-00001,GM0363,air_quality,Damrak,52.3752,4.8963,2001:db8:363::1,Gemeente,no,\n"
    "gm0363-ns-00001,GM0363,noise,Rembrandtplein,52.366,4.896,,Gemeente,ja,2030-01-01\n"
    "gm0344-lp-00001,GM0344,lamppost,Domplein,52.0908,5.1222,fd00:344::9,,false,\n"
)


def test_a_good_csv_imports_every_row_with_logins(registry: Registry) -> None:
    result = import_devices(registry, GOOD_CSV, Format.CSV)
    assert [d.device_id for d in registry.devices()] == [
        "gm0344-lp-00001",
        "gm0363-aq-00001",
        "gm0363-ns-00001",
    ]
    noise = registry.device("gm0363-ns-00001")
    assert noise.personal_data is True
    assert noise.active_until is not None
    assert noise.active_until.isoformat() == "2030-01-01"
    logins = {login.device_id: login for login in registry.broker_logins()}
    for credentials in result.credentials:
        assert verify_password(credentials.password, logins[credentials.device_id].password_hash)


def test_every_bad_row_is_reported_by_line_and_nothing_is_imported(registry: Registry) -> None:
    import_devices(registry, GOOD_CSV.splitlines()[0] + "\n" + GOOD_CSV.splitlines()[1], Format.CSV)
    before = (registry.revision(), registry.devices())
    text = (
        f"{HEADER}\n"
        "gm0363-aq-00002,GM0363,air_quality,Ok,52.37,4.89,,,,\n"  # line 2: fine
        "gm0363-aq-00001,GM0363,air_quality,Taken,52.37,4.89,,,,\n"  # line 3: id exists
        "gm0363-aq-00003,GM0363,radar,Kind,52.37,4.89,,,,\n"  # line 4: unknown kind
        "gm0363-aq-00004,GM0363,noise,Lat,95,4.89,,,,\n"  # line 5: latitude
        "gm0363-aq-00005,GM0363,noise,Addr,52.3,4.8,2001:db8:999::1,,,\n"  # line 6: prefix
        "gm0363-aq-00006,GM0363,noise,Num,abc,4.8,,,,\n"  # line 7: not a number
        "gm0363-aq-00002,GM0363,noise,Twice,52.3,4.8,,,,\n"  # line 8: repeats line 2
        "gm0363-aq-00007,GM0363,noise,Flag,52.3,4.8,,,maybe,\n"  # line 9: not a boolean
    )
    with pytest.raises(ImportRejected) as caught:
        import_devices(registry, text, Format.CSV)
    problems = caught.value.problems
    assert [p.where for p in problems] == [f"line {n}" for n in range(3, 10)]
    reasons = [p.reason for p in problems]
    assert "already exists" in reasons[0]
    assert "unknown device kind 'radar'" in reasons[1]
    assert "latitude 95.0 is outside -90..90" in reasons[2]
    assert "2001:db8:363::/48" in reasons[3]
    assert "latitude 'abc' is not a number" in reasons[4]
    assert "repeats line 2" in reasons[5]
    assert "'maybe' is not true or false" in reasons[6]
    assert (registry.revision(), registry.devices()) == before


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("deviceId,tenant,kind,name\nx,GM0363,noise,n\n", "column 'latitude' is missing"),
        (f"{HEADER},colour\n", "unknown column 'colour'"),
        (f"{HEADER}\n", "holds no devices"),
        (f"{HEADER}\na,GM0363,noise,n,1,2,,,,,extra\n", "more values than columns"),
    ],
)
def test_malformed_csv_files_are_refused(registry: Registry, text: str, words: str) -> None:
    with pytest.raises(ImportRejected, match=words):
        import_devices(registry, text, Format.CSV)
    assert registry.devices() == []


def test_spreadsheet_csv_with_semicolons_and_a_bom_imports(registry: Registry) -> None:
    text = "\ufeff" + GOOD_CSV.replace(",", ";")
    import_devices(registry, text, Format.CSV, issue_logins=False)
    assert len(registry.devices()) == 3
    assert registry.broker_logins() == []


def test_geojson_round_trip_keeps_every_field(registry: Registry, tmp_path: Path) -> None:
    import_devices(registry, GOOD_CSV, Format.CSV)
    registry.retire("gm0363-aq-00001")
    exported = export(registry.devices(), Format.GEOJSON)
    document = json.loads(exported)
    assert document["crs"]["properties"]["name"] == "urn:ogc:def:crs:OGC:1.3:CRS84"
    first = document["features"][0]
    assert first["geometry"] == {"type": "Point", "coordinates": [5.1222, 52.0908]}
    assert first["properties"]["ipv6Address"] == "fd00:344::9"
    with Registry(f"sqlite:///{tmp_path / 'copy.sqlite3'}") as copy:
        for tenant in registry.tenants():
            copy.add_tenant(tenant)
        import_devices(copy, exported, Format.GEOJSON)
        strip = [(d.device_id, d.retired_at, d) for d in copy.devices()]
        assert [(i, r) for i, r, _ in strip] == [
            (d.device_id, d.retired_at) for d in registry.devices()
        ]
        assert [d for *_, d in strip] == registry.devices()  # created_at is not compared
        assert export(copy.devices(), Format.CSV) == export(registry.devices(), Format.CSV)


def test_bad_geojson_features_are_reported_by_number(registry: Registry) -> None:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.9, 52.37]},
            "properties": {"deviceId": "ok-1", "tenant": "GM0363", "kind": "noise", "name": "a"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[4.9, 52.37], [4.9, 52.38]]},
            "properties": {"deviceId": "bad-2", "tenant": "GM0363", "kind": "noise", "name": "b"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [4.9, 52.37]},
            "properties": {"deviceId": "bad-3", "tenant": "GM0363", "kind": "noise"},
        },
    ]
    text = json.dumps({"type": "FeatureCollection", "features": features})
    with pytest.raises(ImportRejected) as caught:
        import_devices(registry, text, Format.GEOJSON)
    assert [(p.where, p.field) for p in caught.value.problems] == [
        ("feature 2", "geometry"),
        ("feature 3", "name"),
    ]
    with pytest.raises(ImportRejected, match="line 1"):
        import_devices(registry, '{"type": "FeatureCollection", "features": [', Format.GEOJSON)
    assert registry.devices() == []


def test_the_command_line_adds_lists_imports_and_exports(
    registry_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LANTAARN_REGISTRY_URL", registry_url)
    assert (
        main(["devices", "add-tenant", "GM0363", "Amsterdam", "--prefix", "2001:db8:363::/48"]) == 0
    )
    assert main(["devices", "add-tenant", "GM0344", "Utrecht", "--prefix", "fd00:344::/32"]) == 0
    what = ["--tenant", "GM0363", "--kind", "waste_bin", "--name", "Bin"]
    where = ["--lat", "52.37", "--lon", "4.9", "--ipv6", "2001:db8:363::b"]
    code = main(["devices", "add", "gm0363-wb-00001", *what, *where])
    out = capsys.readouterr().out
    assert code == 0
    assert "broker username: GM0363/gm0363-wb-00001" in out
    password = out.split("broker password: ")[1].split()[0]
    with Registry(registry_url) as registry:
        (login,) = registry.broker_logins()
        assert verify_password(password, login.password_hash)

    source = tmp_path / "fleet.csv"
    source.write_text(GOOD_CSV)
    logins = tmp_path / "logins.csv"
    assert main(["devices", "import", str(source), "--credentials", str(logins)]) == 0
    assert len(logins.read_text().splitlines()) == 4
    assert logins.stat().st_mode & 0o077 == 0

    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\nx-1,GM0363,radar,n,52,4,,,,\nx-2,GM0363,noise,n,52,400,,,,\n")
    capsys.readouterr()
    assert main(["devices", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s), nothing changed" in err
    assert "line 2: unknown device kind 'radar'" in err
    assert "line 3: longitude 400.0 is outside -180..180" in err

    assert main(["devices", "list", "--tenant", "GM0363", "--kind", "noise"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["DEVICE", "gm0363-ns-00001"]
    assert main(["devices", "retire", "gm0363-ns-00001"]) == 0
    target = tmp_path / "active.geojson"
    assert main(["devices", "export", str(target), "--status", "active"]) == 0
    exported = json.loads(target.read_text())
    assert len(exported["features"]) == 3  # four devices, one retired
    capsys.readouterr()
    assert main(["devices", "export", "-", "--format", "csv", "--bbox", "5,52,5.2,52.2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].startswith("gm0344-lp-00001,GM0344,lamppost,")
    assert len(rows) == 2


def test_the_registrys_problems_are_named_by_the_files_columns(registry: Registry) -> None:
    import_devices(registry, GOOD_CSV, Format.CSV)
    text = (
        f"{HEADER}\n"
        "gm0363-aq-00001,GM0363,air_quality,Taken,52.3752,4.8963,,Gemeente,no,\n"
        "gm0363-aq-00002,GM0363,air_quality,Elsewhere,52.3752,4.8963,2001:db8:344::1,,no,\n"
        "gm0363-aq-00003,GM0363,air_quality,Bad date,52.3752,4.8963,,,no,2030-13-01\n"
    )
    with pytest.raises(ImportRejected) as caught:
        import_devices(registry, text, Format.CSV)
    assert [(p.where, p.field) for p in caught.value.problems] == [
        ("line 2", "deviceId"),
        ("line 3", "ipv6Address"),
        ("line 4", "activeUntil"),
    ]
