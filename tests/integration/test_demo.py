"""`lantaarn demo` as a user runs it: live data within a minute, a clean stop, clear port errors."""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devices import Registry
from lantaarn.localstack import free_port
from tests.broker.peers import Listener, connect
from tests.conftest import require_program

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def test_the_demo_serves_live_data_and_stops_cleanly(tmp_path: Path) -> None:
    require_program("mosquitto", "mosquitto")
    require_program("influxd", "influxdb")
    # Free ports may be taken by another program before the demo binds them: it then says
    # so (exit 2) and we try other ports.
    for _attempt in range(4):
        api, mqtt, influx = free_port(), free_port(), free_port()
        tls, certificate = free_port(), free_port()
        argv = [
            sys.executable, "-m", "lantaarn", "demo", "--data-dir", str(tmp_path / "data"),
            "--api-port", str(api), "--mqtt-port", str(mqtt), "--influx-port", str(influx),
            "--mqtt-tls-port", str(tls), "--mqtt-certificate-port", str(certificate),
            "--devices", "120", "--interval", "2",
        ]  # fmt: skip
        log = (tmp_path / "demo.log").open("wb")
        demo = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            demo.wait(3)
        except subprocess.TimeoutExpired:
            break  # running
        log.close()
        assert demo.returncode == 2, (tmp_path / "demo.log").read_text()[-3000:]
    try:
        deadline = time.monotonic() + 60
        seen: dict[str, str] = {}
        changed = False
        while time.monotonic() < deadline and not changed:
            time.sleep(1)
            try:
                latest = httpx.get(f"http://127.0.0.1:{api}/v1/latest", timeout=5).json()
            except httpx.HTTPError:
                continue
            live = {d["deviceId"]: d["ts"] for d in latest if d["ts"]}
            changed = bool(seen) and any(live.get(k) != v for k, v in seen.items())
            seen = seen or live
        assert changed, (tmp_path / "demo.log").read_text()[-3000:]
        # Both kinds of device login deliver over TLS: certificates (every other device) and
        # passwords (the rest).
        certified = {p.stem for p in (tmp_path / "data" / "simulated-certificates").glob("*.crt")}
        assert 0 < len(certified) < 120
        assert certified & live.keys(), "no device with a certificate delivered"
        assert live.keys() - certified, "no device with a password delivered"
        assert len(latest) == 120
        page = httpx.get(f"http://[::1]:{api}/dashboard", timeout=5)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        # The broker wants a login: an anonymous client is turned away.
        anonymous = subprocess.run(
            ["mosquitto_pub", "-h", "::1", "-p", str(mqtt), "-t", "lantaarn/v1/GM0363/x/telemetry",
             "-m", "{}", "-q", "1", "-V", "mqttv5"],
            capture_output=True, text=True, check=False,
        ) if _have("mosquitto_pub") else None  # fmt: skip
        if anonymous is not None:
            assert anonymous.returncode != 0
        _secrets_are_owner_only(tmp_path / "data")
        _devices_reach_it_over_tls(tmp_path / "data", tls, certificate)
        # InfluxDB wants a login: an anonymous query is refused.
        refused = httpx.get(f"http://[::1]:{influx}/query", params={"q": "SHOW DATABASES"})
        assert refused.status_code == 401
        _the_alert_evaluator_runs(tmp_path / "data", api)
        children = _children(demo.pid)
        assert len(children) >= 2  # mosquitto and influxd
        started = time.monotonic()
        demo.send_signal(signal.SIGTERM)
        demo.wait(15)
        assert time.monotonic() - started < 10
        assert demo.returncode == 0
        for child in children:
            assert not Path(f"/proc/{child}").exists() or _zombie(child)
        for port in (api, mqtt, influx, tls, certificate):
            with socket.socket(socket.AF_INET6) as sock:
                # Nothing listens any more (connections may linger in TIME_WAIT).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::1", port))
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()


def _the_alert_evaluator_runs(data: Path, api: int) -> None:
    """The demo switched the built-in rules on for its tenants and its evaluator holds the
    lease (so its rounds run), with no platform channel configured."""
    rules = httpx.get(f"http://[::1]:{api}/v1/alert-rules", timeout=5).json()["items"]
    builtins = {(r["tenant"], r["builtin"]) for r in rules}
    assert {t for t, _ in builtins} == {"GM0363", "GM0344"}
    assert {b for _, b in builtins} >= {"silence", "lamp-faults", "lamp-refusing"}
    deadline = time.monotonic() + 20
    holder = None
    while holder is None and time.monotonic() < deadline:
        with Registry(f"sqlite:///{data / 'registry.sqlite3'}") as registry:
            holder = registry.lease_holder("alerts")
        time.sleep(0.5)
    assert holder is not None, "the demo's alert evaluator never took its lease"
    answer = httpx.get(f"http://[::1]:{api}/v1/alerts", timeout=5)
    assert answer.status_code == 200


def test_a_taken_port_gets_a_clear_message(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "lantaarn", "demo", "--data-dir", str(tmp_path),
             "--api-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert "--api-port" in result.stderr
    assert "Traceback" not in result.stderr


def _devices_reach_it_over_tls(data: Path, tls: int, certificate: int) -> None:
    """The device listeners speak TLS with the demo's own CA; plain MQTT only on loopback."""
    ca = data / "pki" / "ca.crt"
    username, _ = next(iter(json.loads((data / "simulated-devices.json").read_text()).values()))
    wrong = connect(Listener("tls", "::1", tls, ca), username, "wrong", client_id=username)
    assert wrong.connack is not None  # the TLS handshake held: the broker answered
    assert wrong.refused
    assert connect(Listener("x509", "::1", certificate, ca), None, None).refused  # no certificate
    config = "".join(p.read_text() for p in (data / "mosquitto" / "conf.d").glob("*.conf"))
    addresses = {line.split()[2] for line in config.splitlines() if line.startswith("listener ")}
    assert addresses == {"::1", "127.0.0.1"}


def _secrets_are_owner_only(data: Path) -> None:
    """The data folder is 0700, the registry and every secret 0600 (or 0640 for the broker)."""
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("registry.sqlite3", "service-logins.json", "simulated-devices.json"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    for name in ("passwd", "acl"):
        path = data / "mosquitto" / name
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode in (0o600, 0o640), (name, oct(mode))
        if mode == 0o640:
            assert grp.getgrgid(path.stat().st_gid).gr_name == "mosquitto"


def _have(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
