"""Dashboard sessions: a random id in an HttpOnly cookie stands for an API key the browser showed.

The browser gives the key once (`POST /v1/sessions`) and from then on only the cookie, which
page scripts cannot read. The server keeps the SHA-256 of each session id, never the id itself,
with the key it stands for; the key's role, tenants and revocation are looked up on every use, so
revoking the key ends its sessions. Sessions live in this process's memory: a restart, or another
replica, signs the browser out (it then asks for the key again). A session ends after
`idle_s` unused and at the latest `max_s` after it began.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "lantaarn_session"
# Sessions one key may hold at once; a new one beyond that ends the key's oldest.
PER_KEY = 16


@dataclass(slots=True)
class Session:
    """A session: the key it stands for, and when it began and was last used (clock seconds)."""

    key_id: str
    started: float
    used: float


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """The open sessions, by the hash of their id (single event loop only)."""

    def __init__(
        self, idle_s: float, max_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, key_id: str) -> tuple[str, Session]:
        """A new session for a key: its id (for the cookie, not kept) and the session."""
        now = self._clock()
        self._expire(now)
        # The dict keeps insertion order: a key's sessions come oldest first.
        own = [digest for digest, s in self._sessions.items() if s.key_id == key_id]
        for digest in own[: max(0, len(own) - PER_KEY + 1)]:
            del self._sessions[digest]
        session_id = secrets.token_urlsafe(32)
        session = Session(key_id, now, now)
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def find(self, session_id: str) -> Session | None:
        """The live session with this id, marked as used now; None when unknown or expired."""
        digest = _digest(session_id)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            del self._sessions[digest]
            return None
        session.used = now
        return session

    def close(self, session_id: str) -> None:
        """End a session (signing out); unknown ids are ignored."""
        self._sessions.pop(_digest(session_id), None)

    def remaining_s(self, session: Session) -> float:
        """Seconds until the session ends if it stays unused."""
        end = min(session.used + self.idle_s, session.started + self.max_s)
        return max(0.0, end - self._clock())

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.used > self.idle_s or now - session.started > self.max_s

    def _expire(self, now: float) -> None:
        for digest in [d for d, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[digest]
