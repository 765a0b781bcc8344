"""The subcommands of `lantaarn`, one module each.

Each module has `add(commands, settings)`, which adds its parser and sets `run`, a function
`(settings, args) -> exit code`. A command imports what it runs inside `run`, so that
`lantaarn --help` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Protocol

from lantaarn.settings import Settings

Subcommands = argparse._SubParsersAction  # noqa: SLF001 - argparse names no public type


class Command(Protocol):
    """A module that adds one subcommand."""

    def add(self, commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
        """Add the subcommand's parser."""


def install_stop(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT and SIGTERM (call inside the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def hostport(host: str, port: int) -> str:
    """`[::1]:8000` or `127.0.0.1:8000`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
