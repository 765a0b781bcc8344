"""A throwaway certificate authority and a private Mosquitto with a TLS listener, for tests
and benchmarks of our clients over TLS.

The authority is the project's own (`broker.pki`), in the test's temporary folder. The broker
is `lantaarn.localstack.Mosquitto` with one more listener, configured here rather than there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from broker.pki import Authority
from lantaarn.localstack import Mosquitto, _tcp_open, free_port


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA's certificate, and the broker's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_authority(folder: Path, name: str = "lantaarn test CA") -> TlsFiles:
    """A new CA in `folder`, and its certificate for a broker on ::1, 127.0.0.1 and localhost."""
    authority = Authority.create(folder, name=name)
    cert, key = authority.issue_server(["localhost"], ["::1", "127.0.0.1"])
    return TlsFiles(authority.ca_file, cert, key)


@dataclass
class TlsMosquitto(Mosquitto):
    """Our private Mosquitto plus a TLS listener on ::1 and 127.0.0.1 (`tls_port`)."""

    tls: TlsFiles | None = None  # type: ignore[assignment]  # not the shipped device listeners
    tls_port: int = field(default_factory=free_port)

    def _listening(self) -> bool:
        return _tcp_open("::1", self.port) and _tcp_open("127.0.0.1", self.tls_port)

    def write_config(self) -> None:
        """The shipped configuration (anonymous on loopback), then the TLS listeners (TLS 1.2
        at least) in a file of their own beside it."""
        super().write_config()
        assert self.tls is not None
        lines = []
        for address in ("::1", "127.0.0.1"):
            lines += [
                f"listener {self.tls_port} {address}",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                "tls_version tlsv1.2",
            ]
        (self.folder / "conf.d" / "test-tls.conf").write_text("\n".join(lines) + "\n")
