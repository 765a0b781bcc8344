"""Mosquitto's configuration, rendered from the files shipped in `deploy/mosquitto/`.

A deployment copies those files and fills in their `${...}` placeholders once; `lantaarn demo` and
the tests render the very same files here with their own folders and ports, so there is one
broker configuration, not a second one written in code.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from broker.secrets import write_secret

log = logging.getLogger(__name__)

ROOT: Final = Path(__file__).resolve().parents[1]
DEPLOY: Final = ROOT / "deploy"
MOSQUITTO_TEMPLATES: Final = DEPLOY / "mosquitto"
PLUGIN_FOLDER: Final = Path(__file__).resolve().parent / "plugin"
PLUGIN_NAME: Final = "lantaarn_auth.so"
_PLACEHOLDER: Final = re.compile(r"\$\{([a-z0-9_]+)\}")


class BrokerConfigError(Exception):
    """The broker configuration could not be rendered (or the plugin not built)."""


def render_template(template: Path, values: dict[str, object]) -> str:
    """`template` with every `${name}` replaced; a missing value is an error, not a blank.

    A value of None leaves out the lines that use it (a setting that does not apply here).
    """

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise BrokerConfigError(f"{template}: no value for ${{{name}}}")
        return str(values[name])

    lines = template.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [
        line
        for line in lines
        if all(values.get(name, "") is not None for name in _PLACEHOLDER.findall(line))
    ]
    # Only `${name}`: the files also hold `$7$` hashes, `$share` and `$SYS` in their comments.
    return _PLACEHOLDER.sub(value, "".join(kept))


def plugin_path() -> Path:
    """The lantaarn Mosquitto plugin, built with `make` first when missing or out of date."""
    built = PLUGIN_FOLDER / PLUGIN_NAME
    source = PLUGIN_FOLDER / "lantaarn_auth.c"
    if built.exists() and built.stat().st_mtime >= source.stat().st_mtime:
        return built
    log.info("building the broker plugin in %s", PLUGIN_FOLDER)
    result = subprocess.run(  # noqa: S603 - fixed argv
        ["make", "-s", "-C", str(PLUGIN_FOLDER)],  # noqa: S607 - make from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BrokerConfigError(
            "building the broker plugin failed (it needs gcc, make and the Debian packages "
            f"mosquitto-dev, libmosquitto-dev and libssl-dev):\n{result.stderr.strip()}"
        )
    return built


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The TLS listeners for devices: a password one and an X.509 client-certificate one."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path
    tls_port: int = 8883
    certificate_port: int = 8884
    # A deployment listens on every address; tests and the demo on loopback.
    device_addresses: tuple[str, str] = ("::", "0.0.0.0")  # noqa: S104


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """Logins, ACL and the plugin's limits."""

    plugin: Path
    password_file: Path
    acl_file: Path
    ingest_login: str = "lantaarn-ingest"
    ingest_client_prefix: str = "ingest-"
    ingest_share_group: str = "lantaarn-ingest"
    commands_login: str = "lantaarn-commands"
    commands_share_group: str = "lantaarn-commands"
    auth_failures: int = 20  # per address per window, then refused until the window ends
    auth_window_s: int = 60
    publish_rate: float = 100.0  # messages/s per device on average
    publish_burst: int = 1000


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """Everything a rendered broker configuration depends on."""

    data_dir: Path
    plain_port: int
    user: str = "mosquitto"
    security: BrokerSecurity | None = None  # None: anonymous on loopback (tests only)
    tls: BrokerTls | None = None


def render_mosquitto(layout: BrokerLayout, folder: Path) -> Path:
    """Write `mosquitto.conf` and its `conf.d/` under `folder`; the path of `mosquitto.conf`."""
    conf_dir = folder / "conf.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    for stale in conf_dir.glob("*.conf"):
        stale.unlink()
    values: dict[str, object] = {
        "data_dir": layout.data_dir,
        "user": layout.user,
        "conf_dir": conf_dir,
        "plain_port": layout.plain_port,
    }
    main = folder / "mosquitto.conf"
    main.write_text(render_template(MOSQUITTO_TEMPLATES / "mosquitto.conf", values))
    templates = MOSQUITTO_TEMPLATES / "conf.d"
    security = layout.security
    if security is None:
        # The many tests that are not about security talk to an open broker on loopback.
        (conf_dir / "anonymous.conf").write_text(
            "# tests only: no logins, loopback only\nallow_anonymous true\n"
            f"listener {layout.plain_port} ::1\nlistener {layout.plain_port} 127.0.0.1\n"
        )
        return main
    values |= {
        "plugin": security.plugin,
        "password_file": security.password_file,
        "acl_file": security.acl_file,
        "ingest_login": security.ingest_login,
        "ingest_client_prefix": security.ingest_client_prefix,
        "ingest_share_group": security.ingest_share_group,
        "commands_login": security.commands_login,
        "commands_share_group": security.commands_share_group,
        "auth_failures": security.auth_failures,
        "auth_window_s": security.auth_window_s,
        "publish_rate": security.publish_rate,
        "publish_burst": security.publish_burst,
        # The plugin reads the certificate listener's CRL; without TLS there is none.
        "crl_file": None if layout.tls is None else layout.tls.crl_file,
    }
    names = ["lantaarn-auth.conf"]
    if layout.tls is not None:
        tls = layout.tls
        values |= {
            "ca_file": tls.ca_file,
            "cert_file": tls.cert_file,
            "key_file": tls.key_file,
            "tls_port": tls.tls_port,
            "certificate_port": tls.certificate_port,
            "device_address_v6": tls.device_addresses[0],
            "device_address_v4": tls.device_addresses[1],
        }
        names += ["lantaarn-tls.conf", "lantaarn-x509.conf"]
    for name in names:
        (conf_dir / name).write_text(render_template(templates / name, values))
    return main


def stage_tls(
    authority_folder: Path,
    folder: Path,
    *,
    tls_port: int = 8883,
    certificate_port: int = 8884,
    device_addresses: tuple[str, str] = ("::", "0.0.0.0"),  # noqa: S104
) -> BrokerTls:
    """Copy the authority's CA, server certificate and key, and CRL where the broker reads them.

    The authority's folder is its owner's alone (0700); the broker, dropped to its own user,
    gets copies: the key readable by the broker's group only. Call again after a revocation,
    then reload the broker (Mosquitto 2.0.11 re-reads its certificates and CRL on SIGHUP, and the
    lantaarn plugin disconnects the devices whose certificates are newly revoked).
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged = {}
    for name in ("ca.crt", "server.crt", "server.key", "crl.pem"):
        source = authority_folder / name
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            raise BrokerConfigError(
                f"{source} is missing: `lantaarn pki init` and `lantaarn pki server` make it"
            ) from None
        staged[name] = write_secret(folder / name, data, broker_reads=True)
    return BrokerTls(
        staged["ca.crt"],
        staged["server.crt"],
        staged["server.key"],
        staged["crl.pem"],
        tls_port=tls_port,
        certificate_port=certificate_port,
        device_addresses=device_addresses,
    )
