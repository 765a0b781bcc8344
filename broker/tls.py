"""TLS for our MQTT clients: a context that checks the broker's certificate and name."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(
    ca_file: Path | str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
) -> ssl.SSLContext:
    """A client context, TLS 1.2 at least, trusting `ca_file` (else the system's CAs).

    With `cert_file` (and `key_file`, unless the key is in the same file) we present a client
    certificate, for brokers that identify devices by it. The broker's host name or address
    must be in its certificate.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context
