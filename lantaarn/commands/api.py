"""`lantaarn api`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from lantaarn.commands import Subcommands, hostport, install_stop
from lantaarn.settings import Settings

log = logging.getLogger(__name__)


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `api`."""
    api = commands.add_parser("api", help="run the HTTP API and dashboard")
    api.add_argument("--host", action="append", help="address to listen on (repeatable)")
    api.add_argument("--port", type=int, default=settings.api.port, help="default %(default)s")
    api.add_argument(
        "--certfile", type=Path, default=settings.api.certfile, help="PEM certificate: HTTPS"
    )
    api.add_argument("--keyfile", type=Path, default=settings.api.keyfile, help="its PEM key")
    api.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the API until stopped."""
    from lantaarn.serve import serve_api  # noqa: PLC0415

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)
        hosts = args.host or settings.api.hosts
        scheme = "https" if args.certfile else "http"
        log.info("API on %s", ", ".join(f"{scheme}://{hostport(h, args.port)}" for h in hosts))
        await serve_api(
            settings.api_config(),
            hosts,
            args.port,
            stop,
            certfile=args.certfile,
            keyfile=args.keyfile,
            trusted_proxies=settings.api.trusted_proxies,
        )

    asyncio.run(main())
    return 0
