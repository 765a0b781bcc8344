"""Private Mosquitto and InfluxDB processes under a data folder, for the demo and the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from broker.config import (
    DEPLOY,
    BrokerConfigError,
    BrokerLayout,
    BrokerSecurity,
    BrokerTls,
    plugin_path,
    render_mosquitto,
    render_template,
)

log = logging.getLogger(__name__)

LOOPBACKS = ("::1", "127.0.0.1")


class StackError(Exception):
    """A local service could not be started."""


class PortInUse(StackError):
    """A port we were asked to use is taken."""

    def __init__(self, port: int, address: str, option: str) -> None:
        super().__init__(
            f"port {port} on {address} is already in use by another program; "
            f"stop it or choose another port with {option}"
        )
        self.port = port


class MissingBinary(StackError):
    """A service's program is not installed."""

    def __init__(self, program: str, package: str) -> None:
        super().__init__(
            f"{program} is not installed; install the Debian package {package} "
            f"(apt-get install {package}) or run `make demo` as root"
        )
        self.program = program


def check_port_free(port: int, option: str, addresses: tuple[str, ...] = LOOPBACKS) -> None:
    """Raise PortInUse unless `port` can be bound on every address."""
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(port, address, option) from None
                if exc.errno != errno.EADDRNOTAVAIL:  # that family is absent: nothing to clash
                    raise


def free_port() -> int:
    """A port free on both ::1 and 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
            port = int(sock.getsockname()[1])
        try:
            check_port_free(port, "")
        except PortInUse:
            continue
        return port
    raise StackError("no free port found")


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class ServiceProcess:
    """One service process with its log file; started and stopped by us."""

    name: str
    argv: list[str]
    log_path: Path
    ready: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the process and wait until it answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logfile:
            self.process = subprocess.Popen(  # noqa: S603 - argv built by us
                self.argv,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(
                    f"{self.name} exited with {self.process.returncode} while "
                    f"starting:\n{self.log_tail()}"
                )
            if self.ready():
                log.info("%s is up (pid %d)", self.name, self.process.pid)
                return
            time.sleep(0.1)
        self.stop()
        raise StackError(f"{self.name} did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 8.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _require(program: str, package: str) -> str:
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None
    )
    if path is None:
        raise MissingBinary(program, package)
    return path


def broker_user(folder: Path) -> str:
    """The user the broker runs as: started as root, it drops to `mosquitto` when that user can
    reach `folder` (a folder under root's 0700 home or pytest's 0700 temp cannot be)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name  # Mosquitto cannot change user: it stays us
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return "root"
    for parent in folder.resolve().parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            log.warning("the broker runs as root: user mosquitto cannot reach %s", folder)
            return "root"
    return "mosquitto"


@dataclass
class Mosquitto:
    """A private Mosquitto on ::1 and 127.0.0.1, configured from the files in `deploy/mosquitto/`.

    Without a password file it is open to anonymous clients on loopback (for the many tests that
    are not about security); with one it runs the shipped security: the lantaarn plugin, the ACL,
    and with `tls` the device listeners over TLS.
    """

    folder: Path
    port: int
    password_file: Path | None = None
    acl_file: Path | None = None
    tls: BrokerTls | None = None
    auth_failures: int = 20
    ingest_login: str = "lantaarn-ingest"
    publish_rate: float = 100.0
    publish_burst: int = 1000
    service: ServiceProcess = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = self.folder / "mosquitto.conf"
        self.user = broker_user(self.folder)
        binary = _require("mosquitto", "mosquitto")
        self.service = ServiceProcess(
            "mosquitto",
            [binary, "-c", str(self.config_path)],
            self.folder / "mosquitto.log",
            self._listening,
        )

    def _listening(self) -> bool:
        # Mosquitto binds its listeners one after another: ready when the last one answers.
        if self.tls is not None:
            host = self.tls.device_addresses[1]
            return _tcp_open(host, self.tls.tls_port) and _tcp_open(host, self.tls.certificate_port)
        return _tcp_open("::1", self.port)

    def layout(self) -> BrokerLayout:
        """What the shipped configuration is rendered with for this broker."""
        security = None
        if self.password_file is not None:
            if self.acl_file is None:
                raise StackError("a broker with logins needs an ACL file too")
            security = BrokerSecurity(
                plugin_path(),
                self.password_file,
                self.acl_file,
                ingest_login=self.ingest_login,
                auth_failures=self.auth_failures,
                publish_rate=self.publish_rate,
                publish_burst=self.publish_burst,
            )
        return BrokerLayout(self.folder / "data", self.port, self.user, security, self.tls)

    def write_config(self) -> None:
        """Render the configuration; the broker's own folders belong to the broker's user."""
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        if self.user == "mosquitto":
            entry = pwd.getpwnam("mosquitto")
            os.chown(data, entry.pw_uid, entry.pw_gid)
        data.chmod(0o700)  # queued messages: the broker's alone
        try:
            render_mosquitto(self.layout(), self.folder)
        except BrokerConfigError as exc:
            raise StackError(str(exc)) from exc

    def start(self) -> None:
        """Write the configuration and start the broker."""
        self.write_config()
        self.service.start()

    def reload(self) -> None:
        """Make the broker re-read its password file, ACL, certificates and CRL (SIGHUP)."""
        self.write_config()
        if self.service.process is not None:
            self.service.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Stop the broker (it saves its persistence file first)."""
        self.service.stop()


@dataclass
class Influx:
    """A private InfluxDB 1.x listening on ::1."""

    folder: Path
    port: int
    rpc_port: int
    max_body_bytes: int = 25 * 1024 * 1024  # larger writes get 413
    auth_enabled: bool = False
    service: ServiceProcess = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = self.folder / "influxdb.conf"
        binary = _require("influxd", "influxdb")
        self.service = ServiceProcess(
            "influxd",
            [binary, "-config", str(self.config_path)],
            self.folder / "influxd.log",
            self._ping,
        )

    @property
    def url(self) -> str:
        """The HTTP address of this InfluxDB."""
        return f"http://[::1]:{self.port}"

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:  # noqa: S310
                return int(response.status) == 204
        except (urllib.error.URLError, OSError):
            return False

    def config_text(self) -> str:
        """The shipped InfluxDB configuration (deploy/influxdb/influxdb.conf) for this instance."""
        return render_template(
            DEPLOY / "influxdb" / "influxdb.conf",
            {
                "rpc_bind": f"[::1]:{self.rpc_port}",
                "http_bind": f"[::1]:{self.port}",
                "data_dir": self.folder,
                "max_body_bytes": self.max_body_bytes,
                "auth_enabled": "true" if self.auth_enabled else "false",
            },
        )

    def start(self) -> None:
        """Write the configuration and start the database."""
        self.config_path.write_text(self.config_text())
        self.service.start(timeout_s=60)

    def stop(self) -> None:
        """Stop the database."""
        self.service.stop()


class LocalStack:
    """Mosquitto and InfluxDB under one data folder; a context manager that stops both."""

    def __init__(
        self,
        data_dir: Path,
        mqtt_port: int,
        influx_port: int,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        *,
        influx_auth: bool = False,
        tls: BrokerTls | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.mosquitto = Mosquitto(
            data_dir / "mosquitto", mqtt_port, password_file, acl_file, tls=tls
        )
        self.influx = Influx(
            data_dir / "influxdb", influx_port, free_port(), auth_enabled=influx_auth
        )

    def __enter__(self) -> LocalStack:
        try:
            self.influx.start()
            self.mosquitto.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            self.mosquitto.stop()
        with contextlib.suppress(Exception):
            self.influx.stop()


def _in_use(exc: StackError) -> bool:
    text = str(exc).lower()
    return "address already in use" in text or "address in use" in text


_Service = TypeVar("_Service", Influx, Mosquitto)


def _on_free_ports(make: Callable[[], _Service], attempts: int) -> _Service:
    # A port is free when chosen but another program (other test runs share this machine)
    # may take it before the service binds it: then start again on other ports.
    for attempt in range(attempts):
        service = make()
        try:
            service.start()
        except StackError as exc:
            if not _in_use(exc) or attempt == attempts - 1:
                raise
            log.warning("%s lost its port to another program; trying others", service.service.name)
            continue
        return service
    raise AssertionError("unreachable")


def private_influx(
    folder: Path,
    attempts: int = 4,
    max_body_bytes: int = 25 * 1024 * 1024,
    auth_enabled: bool = False,
) -> Influx:
    """A started InfluxDB on free ports."""
    return _on_free_ports(
        lambda: Influx(folder, free_port(), free_port(), max_body_bytes, auth_enabled), attempts
    )


def private_mosquitto(
    folder: Path,
    attempts: int = 4,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    **options: Any,
) -> Mosquitto:
    """A started Mosquitto on free ports (`options`: more `Mosquitto` fields; with `tls`, its
    ports are chosen here too)."""

    def make() -> Mosquitto:
        tls = options.get("tls")
        if tls is not None:
            options["tls"] = dataclasses.replace(
                tls, tls_port=free_port(), certificate_port=free_port()
            )
        return Mosquitto(folder, free_port(), password_file, acl_file, **options)

    return _on_free_ports(make, attempts)
