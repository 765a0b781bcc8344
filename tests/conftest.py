"""Fixtures: private Mosquitto and InfluxDB processes, started once per session on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pytest
from hypothesis import settings
from pluggy import Result

from broker.acl import Role, ServiceLogin
from broker.config import BrokerTls
from broker.passwords import write_broker_config
from devices import Device, Registry, Tenant
from devices.provisioning import Credentials, issue_credentials
from lantaarn.localstack import (
    Influx,
    Mosquitto,
    ServiceProcess,
    private_influx,
    private_mosquitto,
)
from tests.broker import peers
from tests.broker.peers import Listener, Peer, connect
from tests.broker.testca import ThrowawayAuthority

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Under CI the property tests draw the same examples every run: a red run must be reproducible
# (and not a new random draw); by hand they explore afresh each time.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if IN_CI:
    settings.load_profile("ci")
_SERVICES: list[ServiceProcess] = []


def require_program(program: str, package: str) -> None:
    """Skip when a service's program is missing; under CI=true that is a failure."""
    if shutil.which(program) or Path(f"/usr/sbin/{program}").exists():
        return
    message = f"{program} is missing: apt-get install {package} (make test does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private broker for the whole session, anonymous access, on ::1 and 127.0.0.1."""
    require_program("mosquitto", "mosquitto")
    broker = private_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    _SERVICES.append(broker.service)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx]:
    """A private InfluxDB 1.x for the whole session."""
    require_program("influxd", "influxdb")
    database = private_influx(tmp_path_factory.mktemp("influxdb"))
    _SERVICES.append(database.service)
    yield database
    database.stop()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


# --- running on several xdist workers (make test: pytest -n 4) ---------------------------------
#
# Each worker is its own pytest session: its own Mosquitto and InfluxDB (session fixtures, on free
# ports), its own temporary folder, its own PostgreSQL schemas. Tests are handed out a module at a
# time, so a module's fixtures are built once; the browser tests share a package's live platform
# and Chromium, so their package goes to one worker; the modules below share nothing but
# function-scoped fixtures and are long, so their tests are handed out one at a time.
PACKAGE_UNITS = ("tests/browser",)
SPLIT_MODULES = (
    "tests/ingest/test_faults.py",
    "tests/ingest/test_scale_down.py",
    "tests/ingest/test_command.py",
    "tests/integration/test_demo.py",
    "tests/integration/test_doctor.py",
    "tests/broker/test_commands_mqtt.py",
    "tests/timeseries/test_completeness.py",
    "tests/broker/test_attacks.py",
    "tests/devices/test_registry.py",
    "tests/devices/test_schedule_store.py",
)


def work_unit(nodeid: str) -> str:
    """The tests that must run on one worker, named by their package, module or own id."""
    module = nodeid.split("::", 1)[0]
    for package in PACKAGE_UNITS:
        if module.startswith(package + "/"):
            return package
    return nodeid if module in SPLIT_MODULES else module


def _shared_fixture_scope(item: pytest.Item) -> str | None:
    """Where the widest fixture `item` shares with other tests was declared: the package (its
    folder) of a package-scoped one, else the module of a module- or class-scoped one."""
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is None:
        return None
    module = item.nodeid.split("::", 1)[0]
    found = None
    for definitions in fixtureinfo.name2fixturedefs.values():
        fixture = definitions[-1]  # the definition that applies to this test
        if fixture.scope == "package":
            return str(fixture.baseid or module)
        if fixture.scope in ("module", "class"):
            found = module
    return found


_MISPLACED: dict[str, str] = {}  # node id -> why it may not run on this worker


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose shared fixtures its work unit would split fails at once, and says why."""
    if item.nodeid in _MISPLACED:
        pytest.fail(_MISPLACED[item.nodeid], pytrace=False)


def _long(item: pytest.Item) -> bool:
    return (
        item.get_closest_marker("slow") is not None
        or item.get_closest_marker("browser") is not None
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: fail a test whose work unit would split a shared fixture, and put the
    units with a slow test first (every worker sorts alike), so none starts at the end."""
    if not hasattr(config, "workerinput"):
        return
    for item in items:
        shared = _shared_fixture_scope(item)
        unit = work_unit(item.nodeid)
        if shared is not None and not (unit == shared or shared.startswith(unit + "/")):
            _MISPLACED[item.nodeid] = (
                f"it shares fixtures of {shared} but runs as part of {unit} under xdist: name "
                "its package in PACKAGE_UNITS or drop its module from SPLIT_MODULES (conftest.py)"
            )
    slow_units = {work_unit(item.nodeid) for item in items if _long(item)}
    items.sort(key=lambda item: work_unit(item.nodeid) not in slow_units)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent when xdist is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Hand out `work_unit`s in collection order (slow ones first, see above)."""
    if config.getoption("dist") not in ("load", "loadscope", "loadgroup"):
        return None  # --dist each, loadfile, worksteal: as xdist does them
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
        def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
            # Schemathesis names each API operation's test alike; the scheduler keys tests by
            # name, so without a count after the repeats it would run the first one only.
            seen: Counter[str] = Counter()
            unique = []
            for nodeid in collection:
                seen[nodeid] += 1
                unique.append(nodeid if seen[nodeid] == 1 else f"{nodeid}#{seen[nodeid]}")
            super().add_node_collection(node, unique)

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return ByWorkUnit(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    """Show the services' logs when a test fails."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVICES:
        for service in _SERVICES:
            report.sections.append((f"{service.name} log", service.log_tail(60)))


# --- a broker secured as we ship it, for the attack tests ---------------------------------

DEVICE_LISTENERS = ("plain", "tls", "x509")


@dataclass
class SecuredBroker:
    """A private Mosquitto with the shipped security: device logins a-1, b-1 (GM0363), c-1
    (GM0344), an ingest and an operator service login."""

    broker: Mosquitto
    registry: Registry
    logins: dict[str, Credentials]
    listeners: dict[str, Listener]
    authority: ThrowawayAuthority
    certificates: dict[str, tuple[Path, Path]]
    services: list[ServiceLogin]
    ingest_login: str = "lantaarn-ingest"
    ingest_password: str = "ingest-secret"
    operator_login: str = "lantaarn-api"
    operator_password: str = "operator-secret"
    peers: list[Peer] = field(default_factory=list)

    @property
    def service_listener(self) -> Listener:
        """The plain loopback listener the platform's own services use."""
        return self.listeners["plain"]

    def username(self, device_id: str) -> str:
        """The broker login of a device."""
        return self.logins[device_id].username

    def device(
        self,
        listener: Listener,
        device_id: str,
        *,
        must_connect: bool = True,
        **options: Any,
    ) -> Peer:
        """Connect as a device, by default with its login as client id."""
        options.setdefault("client_id", self.username(device_id))
        if listener.name == "x509":  # the certificate is the login
            peer = connect(listener, None, None, cert=self.certificates[device_id], **options)
        else:
            credentials = self.logins[device_id]
            peer = connect(listener, credentials.username, credentials.password, **options)
        self.peers.append(peer)
        if must_connect:
            assert not peer.refused, f"{device_id} on {listener.name}: {peer.connack}"
        return peer

    def operator(self) -> Peer:
        """The operator (API) service login on the service listener."""
        peer = connect(self.service_listener, self.operator_login, self.operator_password)
        self.peers.append(peer)
        assert not peer.refused, peer.connack
        return peer


class BrokerLimits(TypedDict, total=False):
    """The broker plugin's per-device publish limits a test may lower (see `Mosquitto`)."""

    publish_rate: float  # messages/s on average
    publish_burst: int  # messages


@contextlib.contextmanager
def secured_broker(
    folder: Path, *, auth_failures: int = 1000, **limits: Unpack[BrokerLimits]
) -> Iterator[SecuredBroker]:
    """A broker with authentication, ACL, TLS and the rest of the shipped configuration."""
    require_program("mosquitto", "mosquitto")
    with Registry(f"sqlite:///{folder / 'registry.sqlite3'}") as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam", ("2001:db8:363::/48",)))
        registry.add_tenant(Tenant("GM0344", "Utrecht", ("2001:db8:344::/48",)))
        logins = {}
        for device_id, tenant in (("a-1", "GM0363"), ("b-1", "GM0363"), ("c-1", "GM0344")):
            device = Device(device_id, tenant, "noise", device_id, 52.0, 5.0)
            logins[device_id] = issue_credentials(device)
            registry.add_device(device, password_hash=logins[device_id].password_hash)
        services = [
            ServiceLogin.with_password("lantaarn-ingest", "ingest-secret", Role.INGEST),
            ServiceLogin.with_password("lantaarn-api", "operator-secret", Role.OPERATOR),
        ]
        broker_folder = folder / "mosquitto"
        password_file, acl_file = broker_folder / "passwd", broker_folder / "acl"
        write_broker_config(registry, password_file, acl_file, services)
        authority = ThrowawayAuthority(folder / "ca")
        cert_file, key_file = authority.issue_server()
        certificates = {d: authority.issue_device(c.username) for d, c in logins.items()}
        tls = BrokerTls(
            authority.ca_file,
            cert_file,
            key_file,
            authority.write_crl(),
            device_addresses=("::1", "127.0.0.1"),
        )
        broker = private_mosquitto(
            broker_folder,
            password_file=password_file,
            acl_file=acl_file,
            tls=tls,
            auth_failures=auth_failures,
            **limits,
        )
        _SERVICES.append(broker.service)
        assert broker.tls is not None
        listeners = {
            "plain": Listener("plain", "127.0.0.1", broker.port),
            "tls": Listener("tls", "::1", broker.tls.tls_port, authority.ca_file),
            "x509": Listener("x509", "127.0.0.1", broker.tls.certificate_port, authority.ca_file),
        }
        setup = SecuredBroker(
            broker, registry, logins, listeners, authority, certificates, services
        )
        try:
            yield setup
        finally:
            while peers.OPEN:
                peers.OPEN.pop().release()
            broker.stop()
            _SERVICES.remove(broker.service)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredBroker]:
    """A broker secured as shipped (failed-login limit raised: attack tests fail many logins)."""
    with secured_broker(tmp_path) as setup:
        yield setup


@pytest.fixture
def secured_strict(tmp_path: Path) -> Iterator[SecuredBroker]:
    """A broker secured as shipped that refuses an address after 5 failed logins."""
    with secured_broker(tmp_path, auth_failures=5) as setup:
        yield setup


@pytest.fixture
def secured_slow(tmp_path: Path) -> Iterator[SecuredBroker]:
    """A broker secured as shipped that lets a device publish 2 messages/s, 10 at once."""
    with secured_broker(tmp_path, publish_rate=2, publish_burst=10) as setup:
        yield setup


@pytest.fixture
def secured_dropped() -> Iterator[SecuredBroker]:
    """A broker secured as shipped in a folder its own user can reach, so it drops to it."""
    folder = Path(tempfile.mkdtemp(prefix="lantaarn-broker-"))
    folder.chmod(0o711)  # others may pass through, not list
    try:
        with secured_broker(folder) as setup:
            yield setup
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=DEVICE_LISTENERS)
def listener(request: pytest.FixtureRequest, secured: SecuredBroker) -> Listener:
    """Each listener a device can reach, in turn."""
    return secured.listeners[str(request.param)]
